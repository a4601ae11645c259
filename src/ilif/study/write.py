"""docs/results.md and its figures, from the study's per-run summaries (docs/results-data).

The page is assembled from the sections of :mod:`ilif.study.sections` (each named by content);
the data come from :mod:`ilif.study.load`, the endpoint statistics from
:mod:`ilif.study.endpoints`, the figures from :mod:`ilif.study.figures`. The same summaries give
the same page, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

from ilif.study import sections
from ilif.study.figures import Figures
from ilif.study.load import DATA, load
from ilif.study.plan import DEFAULT_ROOT

DOC = Path("docs/results.md")
FIGURES = Path("docs/figures/results")


def render(data: str | Path = DATA, doc: str | Path = DOC, figures: str | Path = FIGURES,
           root: str | Path = DEFAULT_ROOT) -> tuple[str, Figures]:
    """The page's text (and the figures it drew) from the summaries under ``data``."""
    results = load(data)
    figs = Figures(Path(figures), Path(doc))
    lines = sections.header(results)
    lines += sections.preregistration()
    lines += sections.primary_results(results)
    lines += sections.step0_section(results, figs)
    lines += sections.layer_section(results)
    lines += sections.paths_section(results)
    lines += sections.energy_section(results, figs)
    lines += sections.exploratory_sections(results)
    lines += sections.cost_section(results, Path(root))
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n", figs


def write_results_doc(data: str | Path = DATA, doc: str | Path = DOC,
                      figures: str | Path = FIGURES, root: str | Path = DEFAULT_ROOT) -> Path:
    """Write ``doc`` and its figures (in ``figures``, which the study owns: PNGs there that the
    page no longer shows are removed) from the summaries under ``data``."""
    from ilif.files import write_text

    doc, figures = Path(doc), Path(figures)
    text, figs = render(data, doc, figures, root)
    write_text(doc, text)
    written = {path.resolve() for path in figs.written}
    for stale in figures.glob("*.png") if figures.is_dir() else ():
        if stale.resolve() not in written:
            stale.unlink()
    return doc
