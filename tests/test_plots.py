"""The figures say what they mark and keep their parts apart: the red outlines of heatmap.png and
importance.png are named in a legend, profiles.png's legend lies outside the data, and vhr_example.png's
captions start next to the image."""

import numpy as np
import pytest

import headwise.compress.plots as compress_plots
import headwise.plots as plots
from headwise.testbed.demo import figure


@pytest.fixture
def kept(monkeypatch, tmp_path):
    """Keep each figure open instead of saving it, to inspect its artists."""
    figs = []

    def keep(fig, path):
        fig.canvas.draw()
        figs.append(fig)
        return path

    monkeypatch.setattr(plots, "save", keep)
    monkeypatch.setattr(compress_plots, "save", keep)
    yield figs
    for fig in figs:
        plots.plt.close(fig)


def legend_texts(fig):
    return [t.get_text() for leg in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
            for t in leg.get_texts()]


def test_heatmap_names_its_outlines_and_keeps_them_off_the_cells(kept, tmp_path):
    m = np.arange(12.0).reshape(4, 3)
    plots.heatmap(m, tmp_path / "h.png", "t", "c", marks=[(1, 2), (3, 0)], marks_label="the 2 most damaging heads")
    fig = kept[-1]
    assert legend_texts(fig) == ["red outline: the 2 most damaging heads"]
    ax, leg = fig.axes[0], fig.legends[0]
    assert leg.get_window_extent().y1 <= ax.get_window_extent().y0  # under the plot, not over cells
    outlines = [p for p in ax.patches if p.get_edgecolor()[:3] == (1.0, 0.0, 0.0)]
    assert len(outlines) == 2


def test_heatmap_without_marks_has_no_legend(kept, tmp_path):
    plots.heatmap(np.ones((2, 2)), tmp_path / "h.png", "t", "c")
    assert legend_texts(kept[-1]) == []


def test_profiles_legend_lies_outside_the_data(kept, tmp_path):
    rows = [{"id": f"r{i}", "sparsity": s, "strategy": [s] * 30} for i, s in enumerate([0.2, 0.4, 0.6, 0.7])]
    compress_plots.profiles(rows, "unstructured", tmp_path / "p.png")
    fig = kept[-1]
    ax = fig.axes[0]
    leg = ax.get_legend()
    assert leg is not None and len(leg.get_texts()) == 4
    assert leg.get_window_extent().x0 >= ax.get_window_extent().x1
    assert leg.get_window_extent().x1 <= fig.bbox.x1 + 1  # and still inside the saved figure


def test_vhr_example_captions_start_next_to_the_image(kept, tmp_path):
    from PIL import Image

    image = tmp_path / "scene.png"
    Image.new("RGB", (96, 96), "white").save(image)
    captions = {"greedy": ("a cat and a dog on a bed", ["dog"]), "vhr": ("a cat on a bed", [])}
    figure(image, captions, np.random.default_rng(0).random((30, 9)), tmp_path / "vhr_example.png")
    fig = kept[-1]
    img_ax, text_ax = fig.axes[0], fig.axes[1]
    renderer = fig.canvas.get_renderer()
    image_right = img_ax.get_window_extent(renderer).x1
    text_left = min(t.get_window_extent(renderer).x0 for t in text_ax.texts)
    assert 0 <= text_left - image_right < 0.03 * fig.bbox.width
    assert any("hallucinated: dog" == t.get_text() for t in text_ax.texts)
