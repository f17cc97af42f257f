"""The catalog: the policy file's features, prices, plans and routes, with the plans set through
the API composed in, parsed by `check-config`'s own parser — never the file's customers, which
live in the directory (so a plan change costs the catalog's size, not the customers')."""

from __future__ import annotations

from collections.abc import Mapping

from gatekeeper.config.compose import Changes, Doc, compose_policy, to_plain
from gatekeeper.config.yamlsrc import YMap
from gatekeeper.model import Policy, frozen_map

__all__ = ["build_catalog", "catalog_root", "seed_documents"]


def catalog_root(root: YMap) -> YMap:
    """The file's parsed document without its `customers:` section."""
    entries = {k: v for k, v in root.entries.items() if k != "customers"}
    return YMap(frozen_map(entries), root.line)


def build_catalog(root: YMap, plans: Mapping[str, Doc | None]) -> Policy:
    """The catalog of `root` (see catalog_root) with the API's plan documents (None = removed)
    in place of the file's. Raises ConfigError naming every issue (paths `plans.<name>…`)."""
    return compose_policy(root, Changes(plans=frozen_map(plans)))


def seed_documents(root: YMap) -> dict[str, Doc]:
    """The file's customers as directory documents (the file's own shape, plain JSON data)."""
    node = root.get("customers")
    if not isinstance(node, YMap):
        return {}
    docs: dict[str, Doc] = {}
    for entry in node:
        plain = to_plain(entry.value)
        docs[entry.key] = plain if isinstance(plain, dict) else {}
    return docs
