"""Every experiment of the paper end to end (Algorithm 1, smoke profile): on the
real data where the data root has it, on small files in the official formats
otherwise; the LSTM on short sequences."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import dataset_files
from losscorrection import report, training
from losscorrection.results import COLUMNS, ResultStore

# Stage 1 (cross-entropy, which gives T̂), then both T̂ corrections and a baseline
# that needs the batch-normalised head.
CELLS = [
    training.Cell("forward_That", "asymmetric", 0.2, 0),
    training.Cell("backward_That", "asymmetric", 0.2, 0),
    training.Cell("unhinged_bn", "symmetric", 0.2, 0),
]

GENERATED = {
    "mnist_fc": lambda root: dataset_files.write_mnist_idx(root, n_train=120, n_test=40),
    "imdb_embedding": lambda root: dataset_files.write_imdb_npz(root, n_train=60, n_test=30),
    "imdb_lstm": lambda root: dataset_files.write_aclimdb(root, n_train_per_class=20, n_test_per_class=10),
    "cifar10_resnet14": lambda root: dataset_files.write_cifar10_pickles(root, n_train_per_batch=12, n_test=30),
    "cifar10_resnet32": lambda root: dataset_files.write_cifar10_pickles(root, n_train_per_batch=12, n_test=30),
    "cifar100_resnet44": lambda root: dataset_files.write_cifar100_pickles(root, n_train=60, n_test=30),
}
SHORT = {"imdb_embedding": {"maxlen": 24}, "imdb_lstm": {"maxlen": 12}}
# Runs of one or two steps train the images with the library's recipe: the released
# one (raw pixels, Keras' batch-norm momentum 0.99) needs hundreds of steps before its
# evaluation-mode statistics are usable; after one step the softmax saturates and
# T̂ can have an empty column, so forward correction with T̂ has no finite
# validation loss. (The released recipe's own tests check each of its parts.)
SMALL_DATA_RECIPE = "library"


def check_rows(frame, experiment):
    assert len(frame) == 4  # three requested cells and the stage-1 run behind T̂
    assert tuple(frame.columns) == COLUMNS
    assert set(frame["method"]) == {"cross_entropy", "forward_That", "backward_That", "unhinged_bn"}
    assert frame["test_accuracy"].between(0, 100).all()
    assert (frame["experiment"] == experiment.key).all()
    that = frame[frame["method"].isin(["backward_That", "forward_That"])]
    assert that["T_error"].notna().all() and (that["T_error"] >= 0).all()
    assert frame["selected_epoch"].between(1, frame["epochs"].iloc[0]).all()


@pytest.mark.parametrize("key", sorted(GENERATED))
def test_experiment_runs_on_files_in_the_official_format(key, tmp_path):
    """Every loader and network on a few examples written in the official format."""
    experiment = replace(training.EXPERIMENTS[key], dataset_kwargs=SHORT.get(key, {}), recipe=SMALL_DATA_RECIPE)
    GENERATED[key](tmp_path / "data")
    training.run_cells(experiment, CELLS, profile="smoke", data_root=tmp_path / "data", device="cpu",
                       results_dir=tmp_path / "results", epochs=1, progress=False)
    frame = ResultStore(tmp_path / "results").load(key)
    check_rows(frame, experiment)
    assert set(frame["profile"]) == {"smoke:epochs=1"}  # not the smoke profile's 2 epochs
    T_hat = ResultStore(tmp_path / "results").get_transition(key, "asymmetric", 0.2, 0, "smoke:epochs=1")
    classes = 100 if "cifar100" in key else 2 if "imdb" in key else 10
    assert T_hat.shape == (classes, classes)
    np.testing.assert_allclose(T_hat.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.real_data("mnist10k")
def test_mnist10k_smoke(real_data_root, tmp_path):
    experiment = training.EXPERIMENTS["mnist10k_fc"]
    training.run_cells(experiment, CELLS, profile="smoke", data_root=real_data_root, device="cpu",
                       results_dir=tmp_path, progress=False)
    frame = ResultStore(tmp_path).load("mnist10k_fc")
    check_rows(frame, experiment)
    # two epochs on 512 real digits already beat chance by far
    assert frame.loc[frame["method"] == "cross_entropy", "test_accuracy"].iloc[0] > 60


@pytest.mark.real_data("cifar10jpg")
@pytest.mark.parametrize("key", ["cifar10jpg_resnet14", "cifar10jpg_resnet32"])
def test_cifar10_jpeg_copy_smoke(key, real_data_root, tmp_path):
    experiment = replace(training.EXPERIMENTS[key], recipe=SMALL_DATA_RECIPE)
    training.run_cells(experiment, CELLS, profile="smoke", data_root=real_data_root, device="cpu",
                       results_dir=tmp_path, epochs=1, limit=128, progress=False)
    check_rows(ResultStore(tmp_path).load(key), experiment)


def test_digits_demo_learns(tmp_path):
    """The embedded demo data set: a quick run is far above chance and forward
    correction with the true T beats cross-entropy under heavy asymmetric noise."""
    cells = [training.Cell(m, "asymmetric", 0.6, k) for m in ("cross_entropy", "forward_T") for k in range(2)]
    frame = training.run_cells("digits_fc", cells, profile="paper", device="cpu", results_dir=tmp_path,
                               epochs=15, progress=False)
    mean = frame.groupby("method")["test_accuracy"].mean()
    assert mean["forward_T"] > 80
    assert mean["forward_T"] > mean["cross_entropy"] + 5


def _cifar10n_files(root):
    dataset_files.write_cifar10_jpg(root, per_class_train=4, per_class_test=2, classes=("airplane", "bird", "cat"))
    dataset_files.write_cifar10n(root)


def test_human_noise_reads_the_labels_and_measures_T_on_the_training_split(tmp_path):
    from losscorrection import data, noise
    _cifar10n_files(tmp_path)
    split = data.load_dataset("cifar10n", tmp_path, validation_fraction=0.25, progress=False)
    experiment = training.get_experiment("cifar10n_resnet14")
    assert [n for n, _ in experiment.settings] == ["aggre", "random1", "worst"]
    labels = training.noisy_labels(experiment, split, "worst", 0.0, run=3)
    train, val = split.label_sets["worst"]
    np.testing.assert_array_equal(labels.y_train, train.numpy())
    np.testing.assert_array_equal(labels.y_val, val.numpy())
    counts = np.zeros((3, 3))
    for c, h in zip(split.y_train.tolist(), train.tolist()):
        counts[c, h] += 1
    np.testing.assert_allclose(labels.T, counts / counts.sum(1, keepdims=True))
    np.testing.assert_array_equal(training.noisy_labels(experiment, split, "worst", 0.0, run=0).y_train,
                                  labels.y_train)  # every run sees the same human labels
    with pytest.raises(ValueError, match="measured from the data"):
        training.transition_for(experiment, 3, "aggre", 0.0)
    with pytest.raises(ValueError, match="has no rate"):
        training.Cell("cross_entropy", "aggre", 0.2, 0)
    plain = data.load_dataset("digits")
    with pytest.raises(ValueError, match="needs human labels"):
        training.noisy_labels(training.get_experiment("digits_fc"), plain, "aggre", 0.0, 0)
    assert "aggre" in noise.NOISES


def test_cifar10n_cell_end_to_end_on_small_files(tmp_path):
    from losscorrection import cli
    from losscorrection.results import ResultStore
    _cifar10n_files(tmp_path / "data")
    args = ["run", "cifar10n_resnet14", "--method", "forward_That", "--noise", "worst", "--runs", "1",
            "--profile", "smoke", "--device", "cpu", "--data-root", str(tmp_path / "data"),
            "--results-dir", str(tmp_path / "results"), "--quiet"]
    assert cli.main(args) == 0
    frame = ResultStore(tmp_path / "results").load("cifar10n_resnet14")
    assert sorted(frame["method"]) == ["cross_entropy", "forward_That"]
    assert set(frame["noise"]) == {"worst"} and set(frame["rate"]) == {0.0}
    T_error = frame.loc[frame["method"] == "forward_That", "T_error"]
    assert T_error.notna().all() and (T_error > 0).all()  # ‖T̂ − T‖ against the measured human T


def _lossless_subset_files(root, per_class=6):
    """A small JPEG copy of 3 classes and its "lossless originals": the copy's own
    decoded pixels, listed in an interleaved original order."""
    from losscorrection import data
    dataset_files.write_cifar10_jpg(root, per_class_train=per_class, per_class_test=2,
                                    classes=("airplane", "bird", "cat"))
    copy = data.cifar10jpg_arrays(root, progress=False)
    order = np.argsort(np.tile(np.arange(per_class), 3), kind="stable")  # class 0, 1, 2, 0, 1, 2, ...
    x = copy["x_train"][order].transpose(0, 2, 3, 1)
    target = root / "cifar10-lossless-subset"
    target.mkdir(parents=True)
    np.savez(target / "cifar10_train_first4000.npz", x=x, y=copy["y_train"][order].astype(np.uint8),
             orig_index=np.arange(len(x), dtype=np.int32))
    return copy, order


def test_jpeg_penalty_splits_pair_each_lossless_image_with_its_jpeg(tmp_path):
    from losscorrection import data
    copy, order = _lossless_subset_files(tmp_path)
    splits = data.jpeg_penalty_splits(tmp_path, test_fraction=1 / 3, validation_fraction=0.25, progress=False)
    lossless, jpeg = splits["lossless"], splits["jpeg"]
    assert lossless.sizes == jpeg.sizes == {"train": 9, "val": 3, "test": 6}
    for part in ("train", "val", "test"):
        torch.testing.assert_close(getattr(lossless, f"x_{part}"), getattr(jpeg, f"x_{part}"))  # same pixels here
        torch.testing.assert_close(getattr(lossless, f"y_{part}"), getattr(jpeg, f"y_{part}"))
    assert sorted(np.bincount(lossless.y_test.numpy())) == [2, 2, 2]  # stratified
    # originals that are not the copy's images are refused
    subset = tmp_path / "cifar10-lossless-subset" / "cifar10_train_first4000.npz"
    with np.load(subset) as archive:
        arrays = dict(archive)
    np.savez(subset, **{**arrays, "x": 255 - arrays["x"]})
    with pytest.raises(data.CorruptDataError, match="grey levels"):
        data.jpeg_penalty_splits(tmp_path, progress=False)
    (tmp_path / "cifar10-lossless-subset" / "cifar10_train_first4000.npz").unlink()
    with pytest.raises(data.MissingDataError, match="cifar10_train_first4000.npz"):
        data.jpeg_penalty_splits(tmp_path)


def test_jpeg_penalty_trains_both_versions_and_summarises_the_gap(tmp_path):
    _lossless_subset_files(tmp_path / "data", per_class=8)
    rows = training.jpeg_penalty(tmp_path / "data", runs=2, profile="smoke", device="cpu",
                                 results_dir=tmp_path / "results", progress=False)
    assert sorted(rows["version"]) == ["jpeg", "jpeg", "lossless", "lossless"]
    summary = training.jpeg_penalty_summary(rows, profile="smoke")
    assert list(summary["runs"]) == [2, 2]
    by_version = rows.groupby("version")["test_accuracy"]
    assert summary.attrs["gap"] == pytest.approx(by_version.mean()["lossless"] - by_version.mean()["jpeg"])
    expected_se = np.sqrt(sum(by_version.std(ddof=1)[v] ** 2 / 2 for v in ("lossless", "jpeg")))
    assert summary.attrs["gap_se"] == pytest.approx(expected_se)
    # a schedule run on one version only has no gap; the book's table says so
    store = ResultStore(tmp_path / "results")
    lossless_row = rows[rows["version"] == "lossless"].drop(columns="version").iloc[0]
    store.append([{**lossless_row.to_dict(), "profile": "smoke:lr=0.1", "test_accuracy": 12.5}])
    assert "gap" not in training.jpeg_penalty_summary(training.jpeg_penalty_rows(tmp_path / "results"),
                                                      profile="smoke:lr=0.1").attrs
    table = report.jpeg_penalty_table(tmp_path / "results").splitlines()
    assert table[2].startswith("| `smoke`") and f"**{summary.attrs['gap']:.2f} ± " in table[2]
    assert table[3].startswith("| `smoke:lr=0.1`") and "12.50 ± 0.00 (1)" in table[3] and table[3].rstrip(" |").endswith("–")
    total_minutes = (rows["wall_seconds"].sum() + lossless_row["wall_seconds"]) / 60
    assert "the gap ± its standard error. 5 runs on cpu" in table[-1]
    assert table[-1].endswith(f"; {total_minutes:.1f} min of training in all.")


def test_cifar10n_image_dependence_record(tmp_path):
    _cifar10n_files(tmp_path / "data")
    record = training.cifar10n_image_dependence(tmp_path / "data", folds=2, epochs=1, permutations=20,
                                                device="cpu", results_dir=tmp_path, progress=False)
    saved = json.loads((tmp_path / training.IMAGE_DEPENDENCE_FILE).read_text())
    assert saved == record
    assert set(record["label_sets"]) == {"aggre", "random1", "random2", "random3", "worst"}
    for test in record["label_sets"].values():
        assert test["permutations"] == 20
        assert test["p_value"] is None if test["mislabelled"] == 0 else 0 < test["p_value"] <= 1
    assert len(record["probe_accuracy"]) == 2 and record["train_size"] == 11


def test_cifar10n_smoke_sweep_on_the_real_labels(tmp_path):
    """The CIFAR-10N blocks' code path on the real data: every method on aggre,
    random1 and worst (smoke profile: 512 images, 2 epochs, 1 run)."""
    from conftest import find_real_data_root
    root = find_real_data_root(("cifar10n",))
    result = subprocess.run(
        [sys.executable, "-m", "losscorrection.cli", "sweep", "cifar10n_resnet14", "--profile", "smoke",
         "--device", "cpu", "--data-root", str(root), "--results-dir", str(tmp_path), "--quiet"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    frame = ResultStore(tmp_path).load("cifar10n_resnet14")
    assert len(frame) == 30 and set(frame["noise"]) == {"aggre", "random1", "worst"}
    estimated = frame[frame["method"].isin(["forward_That", "backward_That"])]
    assert estimated["T_error"].notna().all()
    true_T = frame[frame["method"].isin(["forward_T", "backward_T"])]
    assert true_T["T_error"].isna().all() or (true_T["T_error"] == 0).all()


# ------------------------------------------------ the released code's recipe


def test_recipes_default_to_the_library_and_check_their_knobs():
    recipes = training.experiments.RECIPES
    assert recipes["library"] == training.experiments.Recipe()
    assert dict(recipes["released"].model_options) == {"architecture": "released"}
    for knob, value, message in [("augmentation", "zoom", "unknown augmentation 'zoom'; known: pad_crop, shift_flip"),
                                 ("epoch_length", "keras", "unknown epoch_length 'keras'; known: training_pass"),
                                 ("pixels", "raw", "unknown pixels 'raw'; known: scaled_training_mean"),
                                 ("milestone_offset", -1, "milestone_offset must be >= 0")]:
        with pytest.raises(ValueError, match=message):
            training.experiments.Recipe(**{knob: value})


def test_the_released_recipe_is_for_the_image_experiments_only(tmp_path):
    cells = [training.Cell("cross_entropy", "none", 0.0, 0)]
    images = [k for k, e in training.EXPERIMENTS.items() if e.augment]
    assert "cifar10jpg_resnet14" in images and "mnist_fc" not in images
    with pytest.raises(ValueError, match=f"recipe 'released' is for the image experiments \\({', '.join(images)}\\), "
                                         "not digits_fc"):
        training.run_cells("digits_fc", cells, profile="smoke", device="cpu", results_dir=tmp_path,
                           recipe="released", progress=False)
    with pytest.raises(ValueError, match="unknown recipe 'keras'; known: library, released"):
        training.run_cells("cifar10_resnet14", cells, profile="smoke", device="cpu", results_dir=tmp_path,
                           recipe="keras", progress=False)


def test_the_paper_cifar_experiments_train_with_the_released_recipe_and_the_rest_with_the_library_s():
    """The reproduction notes' decision: the released recipe for the paper's
    CIFAR-10/100 blocks; CIFAR-10N and the JPEG-penalty subsets keep the
    library's recipe, with which their stored runs were trained."""
    own = {key: e.recipe for key, e in training.EXPERIMENTS.items()}
    assert {k for k, r in own.items() if r == "released"} == {
        "cifar10_resnet14", "cifar10_resnet32", "cifar10jpg_resnet14", "cifar10jpg_resnet32", "cifar100_resnet44"}
    assert own["cifar10n_resnet14"] == own["cifar10n_resnet32"] == own["mnist_fc"] == "library"
    for version in ("lossless", "jpeg"):
        assert training.studies._subset_experiment(version).recipe == "library"


def test_released_group_data_subtracts_the_mean_of_all_training_images_in_0_255(tmp_path):
    """The released code: ``X - X_train.mean(axis=0)`` over the 50,000 (training and
    validation) images, float64 in numpy; no augmentation at test time."""
    from losscorrection import data
    from losscorrection.training import runner

    dataset_files.write_cifar10_pickles(tmp_path, n_train_per_batch=12, n_test=30)
    split = data.load_dataset("cifar10", tmp_path)
    experiment = training.EXPERIMENTS["cifar10_resnet14"]
    released = runner.make_group_data(experiment, split, torch.device("cpu"), training.experiments.RECIPES["released"])
    all_train = np.concatenate([split.x_train.numpy(), split.x_val.numpy()]).astype(np.float64)
    assert len(all_train) == 60  # every training image
    means = all_train.mean(axis=0)
    inputs = released.prepare(split.x_test, train=False).numpy()
    np.testing.assert_allclose(inputs, split.x_test.numpy() - means, rtol=0, atol=1e-4)
    assert released.augmentation == "shift_flip" and released.augment
    default = runner.make_group_data(experiment, split, torch.device("cpu"))
    np.testing.assert_allclose(default.prepare(split.x_test, train=False).numpy(),
                               split.x_test.numpy() / 255.0 - split.x_train.numpy().mean(axis=0) / 255.0,
                               rtol=0, atol=1e-6)
    assert default.augmentation == "pad_crop"


def test_run_cells_with_either_recipe_end_to_end(tmp_path, monkeypatch, group_checkpoint_paths):
    """The experiment's own recipe (released, for CIFAR-10) stored under the plain
    profile label and the other one under a label that names it, each
    checkpointed under its own name and built with its own network."""
    from losscorrection.training import runner

    built = []
    build = runner.models.build_model

    def recording(name, num_classes, **kwargs):
        built.append(kwargs.get("architecture", "preact"))
        return build(name, num_classes, **kwargs)

    monkeypatch.setattr(runner.models, "build_model", recording)
    dataset_files.write_cifar10_pickles(tmp_path / "data", n_train_per_batch=30, n_test=30)  # one batch of 128
    cells = [training.Cell("cross_entropy", "none", 0.0, 0)]
    options = dict(profile="smoke", data_root=tmp_path / "data", device="cpu", results_dir=tmp_path / "results",
                   epochs=1, progress=False)
    library = training.run_cells("cifar10_resnet14", cells, recipe="library", **options)
    default = training.run_cells("cifar10_resnet14", cells, **options)
    assert list(library["profile"]) == ["smoke:epochs=1:recipe=library"]
    assert list(default["profile"]) == ["smoke:epochs=1"]  # not the same runs: trained again
    assert built == ["preact", "released"]
    assert len(set(group_checkpoint_paths)) == 2
    assert 0 <= default["test_accuracy"].iloc[0] <= 100 and default["selected_epoch"].iloc[0] == 1
    assert training.run_cells("cifar10_resnet14", cells, recipe="released", **options).empty  # = the default
    assert training.run_cells("cifar10_resnet14", cells, recipe="library", **options).empty  # stored under its label
