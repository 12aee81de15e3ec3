"""The messaging store on the loyalty table, through PynamoDB models, one module per
aggregate (the items each holds are in its docstring):

  outbox.py    MSG#<message id> / MSG, PMSG#<provider>#<provider id> / PMSG, the MemberMessages index
  caps.py      MEMBER#<id> / CAPS
  deferred.py  DEFER#<shard> / <not before>#<job id>
  inbound.py   INBOUND#<provider>#<dedup key> / IN, the PendingPushes index
  member.py    the member's partition as the dispatcher reads it (the ledger writes it)
  tokens.py    TOKEN#wechat#<appid> / TOKEN (the WeChat access token, its own store)

store.py implements loyalty.messaging.ports.MessagingStore over them; base.py binds the
models to a table and a boto3 client. Models stay here: the store answers frozen
dataclasses (OutboxRecord, MemberSnapshot, DeferredJob, StoredPush, ...)."""
