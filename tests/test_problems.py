"""Validation names the setting each problem is about (Problem(field, message)), so nothing has to
guess a widget from the wording (a path containing "rank" once marked the LoRA rank field)."""

import copy
import dataclasses
import pickle

import pytest

from workbench.core.config import DataConfig, LoRAConfig, ModelConfig, Problem, TrainConfig
from workbench.core.errors import ConfigError

BAD = TrainConfig(
    model="",
    data=DataConfig(source="", train_fraction=1.5, val_fraction=0.0, max_rows=0, max_length=1),
    lora=LoRAConfig(rank=0, alpha=0, dropout=1.0, targets=("nope",), top_blocks=0),
    epochs=0,
    batch_size=0,
    grad_accum=0,
    eval_every=0,
    eval_batches=0,
    lr=0,
    weight_decay=-1,
    length_grouping=-1,
    max_steps=0,
    device="tpu",
    precision="fp8",
)


def resolve(path: str):
    """The setting a field path names, on a default TrainConfig (or ModelConfig for model_config)."""
    root, *rest = path.split(".")
    obj = ModelConfig() if root == "model_config" else getattr(TrainConfig(), root)
    for name in rest:
        obj = getattr(obj, name)
    return obj


def test_every_problem_names_a_real_setting():
    problems = BAD.validate() + BAD.lora.validate(n_layer=2) + ModelConfig(n_embd=10, n_head=3, n_layer=2).validate()
    assert len(problems) >= 24
    for problem in problems:
        assert isinstance(problem, Problem) and problem.message
        if not problem.field.startswith("model_config."):
            resolve(problem.field)  # raises AttributeError for a field that is not a setting
        else:
            assert hasattr(ModelConfig(), problem.field.split(".", 1)[1])
    fields = {p.field for p in problems}
    assert {"model", "lora.rank", "lora.targets", "lora.top_blocks", "data.source", "data.max_length"} <= fields
    assert {"epochs", "batch_size", "grad_accum", "lr", "device", "precision", "model_config.n_embd"} <= fields


def test_a_path_that_mentions_a_setting_stays_the_datasets_problem():
    problems = DataConfig(source="/home/frank/rank-alpha-spam.csv").validate()
    assert [(p.field, p.message) for p in problems] == [
        ("data.source", "dataset file /home/frank/rank-alpha-spam.csv does not exist")
    ]


def test_config_error_is_one_readable_message():
    with pytest.raises(ConfigError) as error:
        TrainConfig(lora=LoRAConfig(rank=0, alpha=0)).check()
    assert str(error.value) == (
        "Invalid settings: rank must be a whole number from 1 to 1,600; alpha must be a number in (0, 4096]"
    )


def test_a_problem_is_a_value():
    problem = Problem("lora.rank", "rank must be a whole number ≥ 1")
    assert str(problem) == f"{problem}" == "rank must be a whole number ≥ 1"
    assert problem == Problem("lora.rank", "rank must be a whole number ≥ 1") != Problem("epochs", problem.message)
    assert copy.copy(problem).field == pickle.loads(pickle.dumps(problem)).field == "lora.rank"
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.field = "epochs"
    # the compatibility the window's text matching relies on until it reads .field
    assert "; ".join([problem, "x"]).startswith("rank must") and "rank" in problem.lower()


def test_callers_that_join_problems_as_text_still_get_one_message():
    from workbench.bench import BenchConfig

    with pytest.raises(ConfigError, match="Invalid benchmark settings: rank must be a whole number"):
        BenchConfig(lora=LoRAConfig(rank=0)).check()
