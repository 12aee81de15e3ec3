"""The local stack: AWS's part played on one machine, driven by template.yaml.

    python -m infra.local serve --port 3000 --demo 0

or, from Python (tests):

    from infra.local import LocalStack
    with LocalStack("template.yaml", port=0) as stack:
        ...  # stack.api_url, stack.emulator_url, stack.drain(), stack.run_schedule()

Modules, in the order a request meets them: template (read template.yaml),
emulator (moto on loopback, and moto_patches), iam + iam_requests (each function's IAM
policies, enforced on its AWS calls), aws_faults (faults in a share of the functions'
AWS calls, off unless asked), resources (tables, queues, secrets from the template),
runtime (import and invoke the functions), http + apigateway (the API), pollers
(SQS event sources), schedules + cron (run on demand, and what would have fired
meanwhile when the clock moves), stack (all of it together), testing (helpers for
test fixtures), soak (the fault soak of `make soak`), sandbox (the providers).
"""

from .stack import LocalStack
from .template import TemplateError, TemplateModel, load_template

__all__ = ["LocalStack", "TemplateError", "TemplateModel", "load_template"]
