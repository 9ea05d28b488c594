"""The README's set-up lines and its optimizer table follow the project."""

from pathlib import Path

import gradstep

ROOT = Path(__file__).resolve().parents[1]


def test_readme_starts_with_the_two_setup_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```bash") + 3]
    assert block[0] == 'pip install -e ".[cli]" && gradstep compare'
    assert block[1] == 'pip install -e ".[test]" -c constraints.txt && python -m pytest -n auto'
    assert block[1] in (ROOT / ".ci" / "run").read_text()


def test_readme_lists_every_registered_optimizer():
    text = (ROOT / "README.md").read_text()
    for spec in gradstep.REGISTRY:
        assert f"`{spec.name}(" in text, spec.name


def test_readme_optimizer_table_is_the_registry_listing():
    from gradstep.cli.listing import markdown

    assert markdown() in (ROOT / "README.md").read_text(), (
        "the README's optimizer table is not the registry's: regenerate it with "
        "`gradstep list --markdown` (see CONTRIBUTING.md)"
    )


def test_readme_seed_system_examples_run():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The seed systems' own APIs") : text.index("## Conformance")]
    blocks = [b.split("```")[0] for b in section.split("```python")[1:]]
    assert len(blocks) == 3
    for i, block in enumerate(blocks):
        exec(compile(block, f"README example {i}", "exec"), {})
