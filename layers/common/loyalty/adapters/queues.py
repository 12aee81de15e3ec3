"""SQS, by the logical names the services use (jobs, whatsapp, wechat, sms)."""
from __future__ import annotations

import json
import os
from typing import Any

import boto3

ENV = {"jobs": "REMINDER_JOBS_QUEUE_URL", "whatsapp": "WHATSAPP_QUEUE_URL", "wechat": "WECHAT_QUEUE_URL",
       "sms": "SMS_QUEUE_URL"}


class SqsQueues:
    def __init__(self, urls: dict[str, str] | None = None, client: Any | None = None):
        self._urls = urls
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = boto3.client("sqs")
        return self._client

    def url(self, name: str) -> str:
        if self._urls is None:
            self._urls = {key: os.environ.get(var, "") for key, var in ENV.items()}
        return self._urls[name]

    def send(self, name: str, body: dict, delay_s: int = 0) -> None:
        self.client.send_message(QueueUrl=self.url(name), MessageBody=json.dumps(body, ensure_ascii=False),
                                 DelaySeconds=max(0, min(int(delay_s), 900)))

    def send_batch(self, name: str, bodies: list[dict]) -> int:
        """In batches of ten (the SQS maximum); returns how many were sent."""
        sent = 0
        for start in range(0, len(bodies), 10):
            chunk = bodies[start:start + 10]
            response = self.client.send_message_batch(QueueUrl=self.url(name), Entries=[
                {"Id": str(i), "MessageBody": json.dumps(body, ensure_ascii=False)} for i, body in enumerate(chunk)])
            if response.get("Failed"):
                failed = {int(f["Id"]) for f in response["Failed"]}
                for i in failed:  # one retry each, then let the error surface
                    self.send(name, chunk[i])
            sent += len(chunk)
        return sent

    def change_visibility(self, receipt_handle: str, seconds: int, queue: str) -> None:
        self.client.change_message_visibility(QueueUrl=self.url(queue), ReceiptHandle=receipt_handle,
                                              VisibilityTimeout=max(0, min(int(seconds), 43200)))
