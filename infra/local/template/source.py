"""Reading the template file: cfn-lint's decoder, the one the template is linted with, so
short tags (!Ref, !Sub, !GetAtt A.B) come out in their long form and "2012-10-17" stays a
string, exactly as CloudFormation reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .model import TemplateError


def read_template(path: str | Path) -> dict:
    """Parse a CloudFormation/SAM template file into plain dicts (long-form intrinsics)."""
    from cfnlint.decode import cfn_yaml  # a second to import: only a running stack needs it

    try:
        document = cfn_yaml.loads(Path(path).read_text(encoding="utf-8"), str(path))
    except Exception as exc:  # cfn-lint raises its own match objects for YAML errors
        raise TemplateError(f"{path}: cannot read the template ({exc})") from exc
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return _plain(document)


def _plain(node: Any) -> Any:
    # cfn-lint's nodes carry line marks; the rest of the stack wants ordinary values.
    if isinstance(node, dict):
        return {str(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node
