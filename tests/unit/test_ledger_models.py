"""The ledger's PynamoDB models agree with template.yaml, and importing them builds
nothing: no settings read, no boto3, no client (STYLE.md: configuration is read lazily)."""
import subprocess
import sys
from pathlib import Path

from infra.local.template import read_template
from loyalty.adapters.ledger import base
from loyalty.adapters.ledger.consents import ConsentItem
from loyalty.adapters.ledger.disputes import DisputeItem, ReviewItem
from loyalty.adapters.ledger.entries import EntryItem
from loyalty.adapters.ledger.lots import LotItem
from loyalty.adapters.ledger.members import AliasItem, MemberItem
from loyalty.adapters.ledger.orders import IdempotencyItem, OrderItem
from loyalty.adapters.ledger.redemptions import RedemptionItem, StockItem

REPO = Path(__file__).resolve().parents[2]
TABLE = read_template(REPO / "template.yaml")["Resources"]["LoyaltyTable"]["Properties"]
MODELS = [MemberItem, AliasItem, LotItem, EntryItem, OrderItem, IdempotencyItem, RedemptionItem, StockItem,
          ConsentItem, DisputeItem, ReviewItem]


def test_the_table_keys_the_models_use_are_the_templates():
    declared = {d["AttributeName"]: d["AttributeType"] for d in TABLE["AttributeDefinitions"]}
    assert {d["AttributeName"]: d["AttributeType"] for d in base.SCHEMA["AttributeDefinitions"]}.items() <= \
        declared.items()
    assert base.SCHEMA["KeySchema"] == TABLE["KeySchema"]
    for model in MODELS:
        schema = model._get_schema()
        assert schema["key_schema"] == TABLE["KeySchema"], model.__name__


def test_the_expiry_index_and_its_projection_are_the_templates():
    [index] = [i for i in TABLE["GlobalSecondaryIndexes"] if i["IndexName"] == base.EXPIRY_INDEX]
    [ours] = [i for i in base.SCHEMA["GlobalSecondaryIndexes"] if i["IndexName"] == base.EXPIRY_INDEX]
    assert ours["KeySchema"] == index["KeySchema"]
    [model_index] = LotItem._get_schema()["global_secondary_indexes"]
    assert model_index["key_schema"] == index["KeySchema"]
    assert model_index["projection"] == {"ProjectionType": "INCLUDE",
                                         "NonKeyAttributes": index["Projection"]["NonKeyAttributes"]}
    # what the index query reads back is what the projection carries
    assert set(index["Projection"]["NonKeyAttributes"]) == {"member_id", "lot_id", "remaining", "expires_at"}


def test_the_tier_review_index_and_its_projection_are_the_templates():
    [index] = [i for i in TABLE["GlobalSecondaryIndexes"] if i["IndexName"] == base.TIER_REVIEW_INDEX]
    [ours] = [i for i in base.SCHEMA["GlobalSecondaryIndexes"] if i["IndexName"] == base.TIER_REVIEW_INDEX]
    assert ours["KeySchema"] == index["KeySchema"]
    [model_index] = MemberItem._get_schema()["global_secondary_indexes"]
    assert model_index["key_schema"] == index["KeySchema"]
    assert model_index["projection"] == {"ProjectionType": "INCLUDE",
                                         "NonKeyAttributes": index["Projection"]["NonKeyAttributes"]}
    # the review decides on what the index carries: the account and its engagement state
    assert set(index["Projection"]["NonKeyAttributes"]) >= {"member_id", "version", "engagement", "last_tx"}


def test_importing_the_adapter_reads_no_settings_and_makes_no_client():
    code = ("import sys, loyalty.adapters.ledger, loyalty.adapters.messaging\n"
            "from loyalty.settings import settings\n"
            "print(settings.cache_info().currsize, 'boto3' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": f"{REPO / 'layers' / 'common'}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["0", "False"]


def test_an_unbound_model_refuses_io():
    import pytest
    with pytest.raises(AttributeError):
        MemberItem.get("MEMBER#m1", "PROFILE")   # only a store's bound subclass has a table
