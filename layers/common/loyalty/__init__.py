"""Loyalty points ledger and member messaging: domain, services and adapters."""
