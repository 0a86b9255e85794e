# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # IMDB: word embedding and LSTM (Figures 1b–1c and Table 2)
#
# Sentiment classification of movie reviews (two classes) with the 5,000 most
# frequent words, each review truncated or padded to 400 tokens. Two models:
# a 50-dimensional word embedding with dropout 0.8 and ReLU followed by one
# dense layer, and a 256-dimensional embedding followed by an LSTM of 512 units
# and a dense layer of 512 with dropout 0.5. AdaGrad, 50 epochs, five runs.
#
# Noise for this binary task: the flip 0 → 1 is fixed at 5 % and the flip
# 1 → 0 is the rate N; symmetric noise flips either way with probability N.
#
# IMDB is loaded from the Keras `imdb.npz` or the Stanford `aclImdb` archive
# under the data root (see the README). Where neither is present the cells
# below say so instead of showing numbers.

# %% tags=["parameters"]
profile = "paper"  # smoke | quick | paper
data_root = None  # default: $LOSSCORR_DATA, else ./data
device = "auto"  # auto | cpu | cuda
runs = None  # runs per cell (None: the profile's)
epochs = None  # None: the profile's
results_dir = "results"
reuse_results = True  # False: retrain into a temporary store
progress = True
budget_minutes = 5  # train missing cells only when they are estimated to take at most this long

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from losscorrection import report

common = dict(profile=profile, runs=runs, reuse_results=reuse_results, data_root=data_root, device=device,
              results_dir=results_dir, epochs=epochs, progress=progress, budget_seconds=60 * budget_minutes)

# %% [markdown]
# ## Table 2, IMDB blocks

# %%
for name in ("imdb_embedding", "imdb_lstm"):
    display(Markdown(report.table_block(name, **common).markdown))

# %% [markdown]
# How close is the word-embedding block to the paper? Cells within max(2 × the
# paper's standard deviation, 1.5) points, and the mean gap (ours − paper)
# for the two families of methods: the margin losses behind a batch-normalised
# output layer (unhinged, sigmoid), whose output scale is normalised away,
# and the methods that read the softmax of the raw output layer. The same
# summary is given for the block trained first with the text's uniform output
# layer (see the last section).

# %%
from losscorrection import agreement  # noqa: E402
from losscorrection.methods import BN_HEAD_METHODS  # noqa: E402

UNIFORM = f"{profile}:output_init=uniform"  # the text's output-layer init, kept as a variant


def agreement_summary(label: str) -> str:
    cells = agreement.agreement_table(results_dir, label)
    cells = cells[cells["experiment"] == "imdb_embedding"]
    if cells.empty:
        return f"`{label}`: no word-embedding cell stored."
    gap = (cells["ours"] - cells["paper"]).groupby(cells["method"].isin(BN_HEAD_METHODS)).mean()
    return (f"`{label}`: {int(cells['within'].sum())} of {len(cells)} cells within tolerance; mean gap "
            + ", ".join(f"{'batch-normalised output' if bn else 'softmax output'} {value:+.1f} points"
                        for bn, value in gap.items()) + ".")


display(Markdown("\n\n".join(f"- {agreement_summary(label)}" for label in (profile, UNIFORM))))

# %% [markdown]
# ## Figures 1b and 1c: accuracy against the noise rate

# %%
for name in ("imdb_embedding", "imdb_lstm"):
    display(Markdown(report.figure_panel(name, **common).markdown))
    plt.show()

# %% [markdown]
# ## The output layer: the text's uniform or the code's He normal?
#
# The text initialises every weight not followed by a ReLU uniformly in
# [−0.05, 0.05]; the released code gives the word-embedding model's output
# layer He-normal weights (a third of the spread). The clean cross-entropy
# cell under each, from the stored runs (the `paper:output_init=uniform` runs
# were trained with `--model-option output_init=uniform`); the paper reports
# 86.7 % for this cell. The code's He normal reproduces it, so it is the
# default; the whole block trained with the text's uniform is kept, and the
# second table sets the two blocks side by side.

# %%
display(Markdown(report.variants_table(results_dir, "imdb_embedding")))

# %%
display(Markdown(report.variant_comparison(results_dir, "imdb_embedding", profile, UNIFORM)))
