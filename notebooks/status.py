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
# # Reproduction status
#
# Every cell of Table 2 and of Figure 1, for every experiment: the paper's
# value where our copy of the paper has it, ours (mean ± standard deviation),
# the number of runs stored, the profile and the device they ran on.
# *complete*: the paper's number of runs is stored; *partial*: fewer;
# *pending*: none yet, though the data is here (the CIFAR ResNets, which need
# a GPU); *needs … data*: none, and the data set is absent from the data root
# (the experiment chapter names its files). Figure 1 cells that coincide with a Table 2 cell
# (no noise, asymmetric 0.2) are listed once, under Table 2.

# %% tags=["parameters"]
profile = "paper"  # smoke | quick | paper
data_root = None  # default: $LOSSCORR_DATA, else ./data
results_dir = "results"

# %%
from IPython.display import Markdown, display

from losscorrection import report
from losscorrection.methods import METHOD_SPECS

status = report.status_table(results_dir, profiles=(profile,), data_root=data_root)
# one column for every "needs <dataset> data": the experiment names the data set
summary = status.assign(status=status["status"].mask(status["status"].str.startswith("needs"), "needs data"))
counts = summary.pivot_table(index="experiment", columns="status", values="method", aggfunc="count",
                             fill_value=0)
display(Markdown(f"Profile `{profile}`: cells per experiment and status."))
display(counts)

# %%
for name, part in status.groupby("experiment", sort=False):
    shown = part.drop(columns="experiment").assign(method=part["method"].map(lambda m: METHOD_SPECS[m].label))
    display(Markdown(f"### {name}\n\n" + shown.to_markdown(index=False)))

# %% [markdown]
# ## Unfinished groups
#
# Runs too long for one sitting are trained in parts: a sweep stopped by
# `--time-limit` keeps its group's whole training state under
# `results/checkpoints/`, which is committed, so that the same command,
# run in any clone on the same kind of device and precision, continues
# the group where it stopped.

# %%
unfinished = report.unfinished_groups(results_dir)
if unfinished.empty:
    display(Markdown("*No unfinished group is stored.*"))
else:
    shown = unfinished.assign(epoch=[f"{e} of {int(n)}" if n == n else f"{e}"
                                     for e, n in zip(unfinished["epoch"], unfinished["epochs"])],
                              minutes=unfinished["minutes"].round(1))
    display(Markdown(shown.drop(columns=["epochs", "description"]).to_markdown(index=False)))
