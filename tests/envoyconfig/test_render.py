"""render: block-style YAML that reads back as the document, comments where asked."""

from __future__ import annotations

import yaml
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.envoyconfig.render import Note, render

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=12),
    st.sampled_from(["*", "@type", "5", "0.5s", "yes", "null", "a: b", "x #y", "- z", "{}"]),
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(min_size=1, max_size=8), inner)
    ),
    max_leaves=25,
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), documents, min_size=1, max_size=5))
def test_reads_back_as_the_document(document: dict[str, object]) -> None:
    assert yaml.safe_load(render(document, header="", notes={})) == document


def test_header_and_notes_are_comments_where_asked() -> None:
    document = {"a": {"b": [{"name": "x", "port": 1}, "s"]}, "c": {}}
    notes = {
        ("a", "b"): Note("why b"),
        ("a", "b", 0, "name"): Note("first item\nsecond line"),
        ("a", "b", 0, "port"): Note(after="chart: port"),
        ("a", "b", 1): Note(after="scalar item"),
    }
    text = render(document, header="title\n\nmore", notes=notes)
    assert text == (
        "# title\n#\n# more\n"
        "a:\n"
        "  # why b\n"
        "  b:\n"
        "  # first item\n"
        "  # second line\n"
        "  - name: x\n"
        "    port: 1  # chart: port\n"
        "  - s  # scalar item\n"
        "c: {}\n"
    )
    assert yaml.safe_load(text) == document
