from tests.billing.stores import store, store_target

__all__ = ["store", "store_target"]
