"""DistillationConfig: defaults, validation messages, layer-map parsing, command-line parsing."""

from __future__ import annotations

import pytest
from transformers import HfArgumentParser

from nlpkd import DistillationConfig
from nlpkd.config import parse_layer_map


def test_defaults(tmp_path):
    args = DistillationConfig(output_dir=str(tmp_path))
    assert args.temperature == 2.0
    assert args.loss_weights == {"kd": 0.5, "ce": 0.5, "hidden": 0.0, "attn": 0.0, "relation": 0.0}
    assert (args.hidden_loss, args.attn_loss, args.layer_map) == ("mse", "kl", None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"temperature": -1.0}, "temperature must be > 0"),
        ({"alpha_kd": -0.1}, "alpha_kd must be >= 0"),
        ({"alpha_attn": -1.0}, "alpha_attn must be >= 0"),
        ({"alpha_kd": 0.0, "alpha_ce": 0.0}, "all 0"),
        ({"hidden_loss": "l1"}, "hidden_loss must be one of"),
        ({"attn_loss": "cosine"}, "attn_loss must be one of"),
        ({"teacher_dtype": "int8"}, "teacher_dtype must be one of"),
        ({"layer_map": "0-1"}, "layer_map='0-1' is not understood"),
        ({"layer_map": {0: -1}}, "must be >= 0"),
    ],
)
def test_invalid_values_name_the_field(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        DistillationConfig(output_dir=str(tmp_path), **overrides)


@pytest.mark.parametrize(
    "value",
    ["0:1,1:3,2:5", '{"0": 1, "1": 3, "2": 5}', "[1, 3, 5]", [1, 3, 5], {"2": 5, "0": 1, "1": 3}],
)
def test_layer_map_forms(value):
    assert parse_layer_map(value) == {0: 1, 1: 3, 2: 5}


def test_command_line_parsing(tmp_path):
    (args,) = HfArgumentParser(DistillationConfig).parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--temperature",
            "4",
            "--alpha_hidden",
            "1",
            "--hidden_loss",
            "cosine",
            "--layer_map",
            "0:1,1:3",
        ]
    )
    assert args.temperature == 4.0 and args.alpha_hidden == 1.0 and args.hidden_loss == "cosine"
    assert args.layer_map == {0: 1, 1: 3}
