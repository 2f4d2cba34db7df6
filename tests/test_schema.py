from pathlib import Path

import pyarrow as pa

from hardstat import schema

DOC = Path(__file__).parents[1] / "docs" / "schema.md"


def test_docs_schema_md_matches_schema_module() -> None:
    text = DOC.read_text()
    begin = text.index("<!-- BEGIN GENERATED: python -m hardstat.schema -->\n")
    end = text.index("<!-- END GENERATED -->")
    block = text[begin:end].split("\n", 1)[1]
    assert block == schema.render_markdown(), (
        "docs/schema.md is out of date: regenerate its block with python -m hardstat.schema"
    )


def test_every_table_has_run_and_an_arrow_schema() -> None:
    for name, table in schema.TABLES.items():
        s = schema.arrow_schema(name)
        assert s.names == list(table.column_names)
        assert s.names[0] == "run"
        assert s.metadata[b"hardstat.schema_version"] == str(schema.SCHEMA_VERSION).encode()
    pairs = schema.arrow_schema("pairs")
    assert pairs.field("similarity").type == pa.float16()
    assert pairs.field("neg_id").nullable and not pairs.field("rank").nullable


def test_required_pairs_columns_present() -> None:
    required = {"step", "epoch", "query_id", "neg_id", "rank", "similarity", "in_band"}
    assert required <= set(schema.PAIRS.column_names)
