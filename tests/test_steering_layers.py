"""Layer discovery across model families, layer-index validation, and Tensor/tuple output handling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from steering import find_decoder_layers, model_hidden_size, resolve_layers
from steering.layers import layer_hidden, replace_hidden
from tests.tiny_lm import FAMILIES, VLM_FAMILIES, TupleLM, tiny_causal_lm, tiny_vlm


@pytest.mark.parametrize("family", FAMILIES)
def test_text_families_find_all_decoder_layers(family):
    model = tiny_causal_lm(family, layers=3)
    layers = find_decoder_layers(model)
    assert isinstance(layers, nn.ModuleList) and len(layers) == 3
    assert model_hidden_size(model) == 16


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_vlm_families_find_language_model_layers_not_vision_layers(family):
    model = tiny_vlm(family)
    layers = find_decoder_layers(model)
    assert len(layers) == 3
    assert layers is model.get_decoder().layers
    assert model_hidden_size(model) == 32


def test_tuple_model_found_by_name_and_explicit_path():
    model = TupleLM()
    assert find_decoder_layers(model) is model.model.layers
    assert find_decoder_layers(model, "model.layers") is model.model.layers


def test_no_layers_error_names_the_model_class():
    with pytest.raises(ValueError, match="Sequential"):
        find_decoder_layers(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="not found"):
        find_decoder_layers(TupleLM(), "model.nope")


def test_resolve_layers_negative_none_and_out_of_range():
    model = tiny_causal_lm("llama", layers=3)
    assert resolve_layers(model, None) == [0, 1, 2]
    assert resolve_layers(model, [-1, 0]) == [0, 2]
    assert resolve_layers(model, -2) == [1]
    with pytest.raises(ValueError, match="layer 3 is out of range.*3 decoder layers"):
        resolve_layers(model, [3])
    with pytest.raises(ValueError, match="empty"):
        resolve_layers(model, [])


def test_replace_hidden_keeps_structure():
    h, new = torch.zeros(1, 2, 3), torch.ones(1, 2, 3)
    assert replace_hidden(h, new) is new
    out = replace_hidden((h, "cache", None), new)
    assert isinstance(out, tuple) and out[0] is new and out[1:] == ("cache", None)
    assert layer_hidden((h, None)) is h
