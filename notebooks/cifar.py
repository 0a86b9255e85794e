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
# # CIFAR: residual networks (Figures 1d–1f and Table 2)
#
# Pre-activation residual networks of depth 14 and 32 on CIFAR-10 and of depth
# 44 on CIFAR-100, trained as the authors' released Keras code trains them
# (the `released` recipe, the default since the comparison at the end of this
# chapter): SGD with momentum 0.9 and learning rate 0.1 (the text says 0.01:
# the comparison below decided it), divided by 10 after epochs 41 and 81 of
# 120 (for CIFAR-100 after 81 and 121 of 150), an L2 penalty of 10⁻⁴ on the
# convolution and dense kernels, batch 128, epochs of 390 batches, raw pixels
# minus the per-pixel mean, shifts of up to 10 % and horizontal flips. One run
# per cell, as in the paper, whose right half of Table 2 has no standard
# deviations.
#
# A ResNet run takes hours on a CPU (a ResNet-14 run about 4 to 6 h on a
# 2-core CPU without bf16; about 12 minutes on one H200, where up to eight
# runs train together at about the cost of one), so these experiments are
# trained ahead and committed to the results store; this chapter shows what
# is stored, each table and panel with the device its runs used. The lossless
# CIFAR-10 and CIFAR-100 are not on our machines; the CIFAR-10 runs use the
# **JPEG copy** of CIFAR-10 (quality about 75, slightly lossy) and are
# labelled `cifar10jpg_*`. Their paper column is the paper's CIFAR-10 block
# of the same depth, measured on the lossless images. Runs trained with this
# library's own recipe (padded crops, `x / 255`, one pass per epoch) are kept
# under the profile label `paper:recipe=library`, the earlier ones with the
# text's rate 0.01 and every parameter decayed under
# `paper:lr=0.01:weight_decay_scope=all:recipe=library`; neither is shown as
# paper-profile results.

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
train_missing = None  # None: train missing runs only on a GPU or in the smoke profile
committed_results_dir = "results"  # the GPU runs committed with the book

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from losscorrection import report, training

# Without training, the chapter shows the committed paper-profile runs whatever the profile.
train_missing, common = report.gpu_chapter_options(
    profile=profile, device=device, train_missing=train_missing, results_dir=results_dir,
    committed_results_dir=committed_results_dir, runs=runs, reuse_results=reuse_results, data_root=data_root,
    epochs=epochs, progress=progress, budget_minutes=budget_minutes)
smoke = profile == "smoke"
experiments = ["cifar10jpg_resnet14", "cifar10jpg_resnet32", "cifar10_resnet14", "cifar10_resnet32",
               "cifar100_resnet44"]

# %% [markdown]
# ## Table 2, CIFAR blocks
#
# In the smoke profile (a few images, one epoch) only the figure below is
# trained, to exercise the code path; the tables show stored runs only.

# %%
for name in experiments:
    block = report.table_block(name, **common, train_missing=train_missing and not smoke)
    display(Markdown(block.markdown))

# %% [markdown]
# ## Figures 1d–1f: accuracy against the noise rate

# %%
# The smoke profile trains ResNet-14 on 64 images for one epoch: a code-path check only.
smoke_options = dict(epochs=1, limit=64) if smoke else {}
for name in experiments:
    trains = train_missing and (not smoke or name == "cifar10jpg_resnet14")
    options = {**common, **smoke_options} if trains else common
    display(Markdown(report.figure_panel(name, **options, train_missing=trains).markdown))
    plt.show()

# %% [markdown]
# ## Why were our first runs about 5 points below the paper? Three suspects
#
# Our first ResNet-14 runs on the JPEG copy sat about 5 points below the
# paper's CIFAR-10 column in every setting. Three known differences could
# explain it: the JPEG compression of our images, the learning rate (the text
# says 0.01, the released code starts at 0.1) and the scope of the weight
# decay (the released code decays the kernels only; those runs decayed every
# parameter). The first two are measured below; the third needs full-length
# runs that differ in the decay alone. In short: with the code's rate and
# decay, clean cross-entropy reaches 85.70 % with this library's recipe and
# 86.41 % with the released code's (3 runs each; paper 87.8 %, our first
# runs 82.4 %), and what remains is about what the JPEG compression costs.
#
# ### The JPEG penalty
#
# The first 4,000 CIFAR-10 training images exist here without loss as well as
# in the JPEG copy. ResNet-14 is trained and tested on each version of the
# *same* images (2,700 training, 300 validation and 1,000 test images, one
# stratified partition; clean cross-entropy; the CIFAR schedule), several
# runs each (`losscorrection study jpeg-penalty`). The difference of the means
# is what the compression costs at this data size. The runs labelled
# `paper:lr=0.01` repeat the study with the text's learning rate, so the same
# table shows what the learning rate does on the same images; a subset of
# 2,700 training images says less about the full data set than the full-data
# runs below.

# %%
penalty_table = report.jpeg_penalty_table(committed_results_dir)
display(Markdown(penalty_table or "*Not run here yet: `losscorrection study jpeg-penalty` (six ResNet-14 runs on "
                                  "2,700 images, about 75 min on a 2-core CPU).*"))

# %% [markdown]
# ### The learning rate and the weight decay
#
# Every stored clean cross-entropy ResNet-14 run on the JPEG copy, by the
# profile it ran under: `paper` is the companion's default (120 epochs, the
# released code's recipe), `quick` a quarter of the schedule on all the data
# (30 epochs, the rate divided by 10 after epochs 10 and 20), and a suffix
# names what differed from the default (`lr=0.01`: the text's starting rate;
# `weight_decay_scope=all`: every parameter decayed, not only the kernels;
# `recipe=library`: this library's own recipe, next section).
# "Selected epoch" is the epoch whose weights model selection kept. The
# paper's value for this cell is 87.8 %. Under the same 30-epoch schedule on
# all the data the code's 0.1 is far ahead of the text's 0.01, and it
# reaches in 30 epochs what 0.01 reached in 120: the companion trains with
# 0.1 (see the reproduction notes).

# %%
display(Markdown(report.variants_table(committed_results_dir, "cifar10jpg_resnet14")))

# %% [markdown]
# ### The released recipe: where the rest of the gap comes from
#
# The learning rate was not the only way in which the authors' code trains
# its ResNet differently from a textbook pre-activation ResNet. Their Keras
# network has a conv–BN–ReLU stem, convolution biases, Keras' batch-norm
# settings and TensorFlow's padding; an epoch there is 390 batches counted
# from all 50,000 images; the images are shifted by up to 10 % instead of
# cropped from a padded copy, and enter the network as raw pixels minus the
# mean of all 50,000; the loss is a clipped cross-entropy; the kept epoch
# minimises the validation loss *plus* the L2 penalty; and the rate drops one
# epoch later. The `released` recipe does all of this at once, and the
# reproduction notes list each part. This library's own recipe (`--recipe
# library`: padded crops, `x / 255` minus the training mean, one pass per
# epoch, plain cross-entropy, selection on the validation loss alone, He et
# al.'s network) was the default until the comparison below: three clean
# runs of each with the same seeds, by the rule of the reproduction notes
# (the released code stays the default unless the noisy-validation loss
# shows the other better). The table splits the gap to the paper into what
# the JPEG copy costs (measured on the 4,000 images we have without loss, at
# 2,700 training images and about 65 % accuracy: applying it to the full
# data set is an extrapolation) and what each recipe leaves after it.

# %%
gap_table, numbers = report.recipe_gap(committed_results_dir)
report.glue_numbers(
    released_runs=numbers["released_runs"], library_runs=numbers["library_runs"],
    released_gap=numbers["released_gap"], library_gap=numbers["library_gap"],
    jpeg_penalty=numbers["jpeg_penalty"], jpeg_penalty_se=numbers["jpeg_penalty_se"],
    released_left_reading=numbers["released_left_reading"],
    val_loss_difference=numbers.get("released_minus_library_val_loss", float("nan")),
    val_loss_p=numbers.get("released_minus_library_val_loss_p", float("nan")),
    val_accuracy_difference=numbers.get("released_minus_library_val_accuracy", float("nan")))
display(Markdown(gap_table))

# %% [markdown]
# {glue:text}`released_runs` runs of the released recipe and
# {glue:text}`library_runs` of the library's are stored (the released runs
# and two of the library's on one H200 in bf16, the library's first on a
# 2-core CPU in fp32, which recorded no validation loss). On the criterion,
# the noisy-validation loss at the selected epoch, the released recipe is
# {glue:text}`val_loss_difference:+.4f` higher, a difference the two
# same-seed pairs do not separate from zero (p = {glue:text}`val_loss_p:.2f`);
# its noisy-validation accuracy is {glue:text}`val_accuracy_difference:+.1f`
# points higher. The validation split gives no reason to depart from the
# released code, so the released recipe is the default of the CIFAR-10 and
# CIFAR-100 experiments, stored under `paper`, and the library's runs are
# kept under `paper:recipe=library`. The test accuracies are its measured
# effect, not its reason: the released recipe sits
# {glue:text}`released_gap:.2f` points below the paper (the library's
# {glue:text}`library_gap:.2f`), and the JPEG penalty measured on the subset
# is {glue:text}`jpeg_penalty:.2f` ± {glue:text}`jpeg_penalty_se:.2f`
# points: {glue:text}`released_left_reading`. CIFAR-10N, which is not in the
# paper, keeps the library's recipe, with which its runs were trained. A
# ResNet-14 run takes about 4 h in fp32 on a 2-core CPU without bf16; on one
# H200 in bf16 a group of three released-recipe runs took 6.2 s per epoch
# beside another group and 5.5 s alone, about 12 minutes for the 120 epochs.
