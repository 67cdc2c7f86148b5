"""``normalize_inputs``: every input form Speedster accepted, and helpful errors for the rest."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from speedster_dist.errors import InputError
from speedster_dist.inputs import SampleSet, normalize_inputs
from speedster_dist.testing.models import minilm_tokenizer, tiny_mlp, token_batch

TEXTS = ["This is a test.", "Hi my name is John.", "The cat is on the table."]
# MiniLM's WordPiece ids of TEXTS (with [CLS]=101 and [SEP]=102).
IDS = [
    [101, 2023, 2003, 1037, 3231, 1012, 102],
    [101, 7632, 2026, 2171, 2003, 2198, 1012, 102],
    [101, 1996, 4937, 2003, 2006, 1996, 2795, 1012, 102],
]
BERT_KEYS = ("input_ids", "token_type_ids", "attention_mask")


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


class TwoInputs(torch.nn.Module):
    def forward(self, features, mask, scale=1.0):
        return features * mask * scale


class RecordingTokenizer:
    """Stands in for a Hugging Face tokenizer and remembers how it was called."""

    def __init__(self):
        self.calls = []

    def __call__(self, texts, **kwargs):
        self.calls.append((list(texts), kwargs))
        ids = torch.arange(len(texts) * 3).reshape(len(texts), 3)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _equal(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# -- Hugging Face dicts ------------------------------------------------------------------------


def test_plain_dicts_keep_key_order_and_values():
    dicts = [token_batch(seq_len=8, seed=i) for i in range(3)]
    result = normalize_inputs(dicts, None)
    assert isinstance(result, SampleSet)
    assert result.input_names == BERT_KEYS
    assert result.keyword is True
    assert result.labels is None
    assert len(result.samples) == 3
    for sample, original in zip(result.samples, dicts, strict=True):
        for tensor, key in zip(sample, BERT_KEYS, strict=True):
            _equal(tensor, original[key])


def test_batch_encodings_from_a_real_tokenizer(tokenizer):
    encodings = [tokenizer(text, return_tensors="pt") for text in TEXTS]
    assert type(encodings[0]).__name__ == "BatchEncoding"
    result = normalize_inputs(encodings, None)
    assert result.input_names == BERT_KEYS
    assert result.keyword
    assert [s[0].tolist() for s in result.samples] == [[ids] for ids in IDS]
    assert [tuple(s[2].shape) for s in result.samples] == [(1, 7), (1, 8), (1, 9)]
    assert all(int(s[1].sum()) == 0 for s in result.samples)  # token_type_ids are all zero


def test_keyword_samples_call_the_model_by_name():
    dicts = [token_batch(seq_len=4)]
    result = normalize_inputs(dicts, None)
    args, kwargs = result.as_call(result.samples[0])
    assert args == ()
    assert list(kwargs) == list(BERT_KEYS)
    _equal(kwargs["input_ids"], dicts[0]["input_ids"])


def test_encoder_decoder_dicts_carry_decoder_input_ids(tokenizer):
    samples = []
    for question in ("What's the meaning of life?", "Where is the cat?"):
        encoded = tokenizer(question, return_tensors="pt")
        encoded["decoder_input_ids"] = tokenizer("The answer is:", return_tensors="pt").input_ids
        samples.append(encoded)
    result = normalize_inputs(samples, None)
    assert result.input_names == (*BERT_KEYS, "decoder_input_ids")
    assert result.keyword
    decoder = [s[3] for s in result.samples]
    _equal(decoder[0], decoder[1])
    assert decoder[0].tolist() == [[101, 1996, 3437, 2003, 1024, 102]]


def test_a_single_dict_is_one_sample():
    result = normalize_inputs(token_batch(seq_len=5), None)
    assert len(result.samples) == 1
    assert result.input_names == BERT_KEYS


def test_numpy_values_in_dicts_become_tensors():
    ids = np.arange(6, dtype=np.int64).reshape(1, 6)
    result = normalize_inputs([{"input_ids": ids}], None)
    (tensor,) = result.samples[0]
    assert isinstance(tensor, torch.Tensor)
    assert tensor.dtype == torch.int64
    assert tensor.tolist() == ids.tolist()


# -- raw strings with a tokenizer -----------------------------------------------------------------


def test_strings_use_speedster_default_tokenizer_args():
    recorder = RecordingTokenizer()
    result = normalize_inputs(TEXTS, None, tokenizer=recorder)
    assert [texts for texts, _ in recorder.calls] == [[t] for t in TEXTS]
    for _, kwargs in recorder.calls:
        assert kwargs == {"truncation": True, "padding": True, "return_tensors": "pt"}
    assert result.input_names == ("input_ids", "attention_mask")
    assert result.keyword
    assert len(result.samples) == 3


def test_custom_tokenizer_args_override_defaults_but_tensors_stay_torch():
    recorder = RecordingTokenizer()
    args = {"padding": "max_length", "max_length": 12, "return_tensors": "np"}
    normalize_inputs(TEXTS[:1], None, tokenizer=recorder, tokenizer_args=args)
    assert recorder.calls[0][1] == {
        "truncation": True,
        "padding": "max_length",
        "max_length": 12,
        "return_tensors": "pt",
    }


def test_strings_with_a_real_tokenizer(tokenizer):
    result = normalize_inputs(TEXTS, None, tokenizer=tokenizer)
    assert result.input_names == BERT_KEYS
    assert result.keyword
    assert result.labels is None
    assert [s[0].tolist() for s in result.samples] == [[ids] for ids in IDS]
    assert all(int(s[2].min()) == 1 for s in result.samples)  # one text per sample: no padding


def test_custom_tokenizer_args_pad_and_truncate(tokenizer):
    padded = normalize_inputs(
        TEXTS,
        None,
        tokenizer=tokenizer,
        tokenizer_args={"padding": "max_length", "max_length": 12},
    )
    assert {tuple(t.shape) for s in padded.samples for t in s} == {(1, 12)}
    assert padded.samples[0][2].tolist() == [[1] * 7 + [0] * 5]
    assert padded.samples[0][0][0, :7].tolist() == IDS[0]
    truncated = normalize_inputs(
        TEXTS, None, tokenizer=tokenizer, tokenizer_args={"truncation": True, "max_length": 4}
    )
    assert [s[0].tolist() for s in truncated.samples] == [[[*ids[:3], 102]] for ids in IDS]


def test_batch_size_groups_strings_and_pads_each_group(tokenizer):
    result = normalize_inputs(TEXTS, None, tokenizer=tokenizer, batch_size=2)
    assert len(result.samples) == 2
    first, second = result.samples
    assert tuple(first[0].shape) == (2, 8)  # padded to the longer of the two texts
    assert first[2].tolist() == [[1] * 7 + [0], [1] * 8]
    assert tuple(second[0].shape) == (1, 9)  # the remainder


def test_batch_size_below_one_is_rejected(tokenizer):
    with pytest.raises(InputError, match="batch_size must be at least 1, got 0"):
        normalize_inputs(TEXTS, None, tokenizer=tokenizer, batch_size=0)


def test_a_failing_tokenizer_is_reported_with_the_text():
    def broken(texts, **kwargs):
        raise RuntimeError("vocabulary not loaded")

    with pytest.raises(InputError, match=r"tokenizer failed on \['This is a test.'\].*vocabulary"):
        normalize_inputs(TEXTS, None, tokenizer=broken)


# -- plain torch samples -------------------------------------------------------------------------


def test_tuples_of_inputs_with_labels_take_names_from_forward():
    model = TwoInputs()
    data = [((torch.full((1, 4), float(i)), torch.ones(1, 4)), i % 2) for i in range(3)]
    result = normalize_inputs(data, model)
    assert result.input_names == ("features", "mask")  # two inputs: the first two parameters
    assert result.keyword is False
    assert result.labels == [0, 1, 0]
    assert [float(s[0][0, 0]) for s in result.samples] == [0.0, 1.0, 2.0]
    _equal(result.samples[2][1], torch.ones(1, 4))
    args, kwargs = result.as_call(result.samples[0])
    assert kwargs == {}
    assert len(args) == 2


def test_tensor_label_pairs():
    model = tiny_mlp()
    data = [(torch.randn(1, 16), torch.tensor([i])) for i in range(4)]
    result = normalize_inputs(data, model)
    assert result.input_names == ("input",)  # nn.Sequential.forward(self, input)
    assert [s[0].shape for s in result.samples] == [torch.Size([1, 16])] * 4
    assert result.labels is not None
    assert [int(label) for label in result.labels] == [0, 1, 2, 3]
    _equal(result.samples[1][0], data[1][0])


def test_tensor_with_python_label():
    data = [(torch.randn(1, 16), 3), (torch.randn(1, 16), 1)]
    result = normalize_inputs(data, tiny_mlp())
    assert result.labels == [3, 1]
    assert all(len(s) == 1 for s in result.samples)


def test_bare_tensors_have_no_labels():
    data = [torch.randn(2, 16) for _ in range(3)]
    result = normalize_inputs(data, tiny_mlp())
    assert result.labels is None
    assert result.input_names == ("input",)
    for sample, tensor in zip(result.samples, data, strict=True):
        assert len(sample) == 1
        _equal(sample[0], tensor)


def test_tuples_without_labels():
    data = [(torch.randn(1, 4), torch.ones(1, 4))]
    result = normalize_inputs(data, TwoInputs())
    assert result.labels is None
    assert result.input_names == ("features", "mask")


def test_dataloader_batches_have_their_labels_detected():
    x = torch.randn(8, 16)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    result = normalize_inputs(loader, tiny_mlp())
    assert len(result.samples) == 2
    assert result.input_names == ("input",)
    assert [tuple(s[0].shape) for s in result.samples] == [(4, 16), (4, 16)]
    _equal(result.samples[1][0], x[4:])
    assert result.labels is not None
    assert [label.tolist() for label in result.labels] == [[0, 1, 2, 3]] * 2


def test_dataloader_of_inputs_only():
    loader = DataLoader(TensorDataset(torch.randn(6, 16)), batch_size=3)
    result = normalize_inputs(loader, tiny_mlp())
    assert len(result.samples) == 2
    assert result.labels is None
    assert tuple(result.samples[0][0].shape) == (3, 16)


def test_numpy_arrays_are_accepted_like_tensors():
    arrays = [np.full((1, 16), i, dtype=np.float32) for i in range(3)]
    forms = {
        "nested": [((a,), i) for i, a in enumerate(arrays)],
        "pair": [(a, i) for i, a in enumerate(arrays)],
        "bare": list(arrays),
    }
    for form, data in forms.items():
        result = normalize_inputs(data, tiny_mlp())
        assert [float(s[0][0, 0]) for s in result.samples] == [0.0, 1.0, 2.0], form
        assert all(s[0].dtype == torch.float32 for s in result.samples), form
        assert result.labels == (None if form == "bare" else [0, 1, 2]), form


def test_default_names_without_a_model_or_signature():
    data = [((torch.ones(1), torch.ones(1), torch.ones(1)), 0)]
    assert normalize_inputs(data, None).input_names == ("input_0", "input_1", "input_2")
    # A third positional input fills the optional `scale` parameter.
    assert normalize_inputs(data, TwoInputs()).input_names == ("features", "mask", "scale")
    # More inputs than the forward signature names: fall back to generic names.
    assert normalize_inputs(data, tiny_mlp()).input_names == ("input_0", "input_1", "input_2")


def test_tensors_are_detached_from_autograd():
    x = torch.randn(1, 16, requires_grad=True)
    result = normalize_inputs([((x,), 0)], tiny_mlp())
    assert result.samples[0][0].requires_grad is False


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [[], None, (), DataLoader(TensorDataset(torch.empty(0, 16)), batch_size=2)],
    ids=["empty-list", "none", "empty-tuple", "empty-dataloader"],
)
def test_empty_input_data_says_what_to_pass(data):
    with pytest.raises(InputError) as info:
        normalize_inputs(data, tiny_mlp())
    message = str(info.value)
    assert "input_data is empty" in message
    assert "tokenizer dicts" in message
    assert "label" in message


def test_input_error_is_a_value_error():
    assert issubclass(InputError, ValueError)


def test_strings_without_a_tokenizer():
    with pytest.raises(InputError, match=r"holds strings but no tokenizer was given.*tokenizer="):
        normalize_inputs(TEXTS, None)


def test_a_single_string_without_a_tokenizer():
    with pytest.raises(InputError, match="no tokenizer"):
        normalize_inputs("just one text", None)


def test_mixed_strings_and_tensors(tokenizer):
    with pytest.raises(InputError, match="mixes strings with other kinds of samples"):
        normalize_inputs(["a text", torch.ones(1, 3)], None, tokenizer=tokenizer)


def test_dicts_with_different_keys_name_the_sample():
    first = token_batch(seq_len=4)
    second = token_batch(seq_len=4, keys=("input_ids", "attention_mask"))
    with pytest.raises(InputError) as info:
        normalize_inputs([first, second], None)
    message = str(info.value)
    assert "sample 1 has keys ['attention_mask', 'input_ids']" in message
    assert "sample 0 has ['attention_mask', 'input_ids', 'token_type_ids']" in message


def test_dicts_with_keys_in_another_order_are_taken_by_name():
    first = token_batch(seq_len=4)
    second = dict(reversed(list(token_batch(seq_len=5, seed=3).items())))
    result = normalize_inputs([first, second], None)
    assert result.input_names == tuple(first)
    for name, tensor in zip(result.input_names, result.samples[1], strict=True):
        assert torch.equal(tensor, second[name])


def test_empty_dict():
    with pytest.raises(InputError, match="the first input dict is empty"):
        normalize_inputs([{}], None)


def test_non_tensor_dict_values_name_the_key():
    with pytest.raises(
        InputError, match=r"sample 0 key 'input_ids' is a list, expected a torch tensor"
    ):
        normalize_inputs([{"input_ids": [[101, 102]]}], None)


def test_non_tensor_tuple_inputs_name_the_position():
    data = [((torch.ones(1, 4), torch.ones(1, 4)), 0), ((torch.ones(1, 4), 2.5), 1)]
    with pytest.raises(InputError, match="sample 1 input 1 is a float, expected a torch tensor"):
        normalize_inputs(data, TwoInputs())


def test_a_sample_that_is_not_a_sequence():
    with pytest.raises(
        InputError, match=r"sample 1 is a int; expected \(\(tensor, \.\.\.\), label\)"
    ):
        normalize_inputs([torch.ones(1, 16), 7], tiny_mlp())


def test_input_data_that_is_not_iterable():
    with pytest.raises(InputError, match="input_data must be a list or a DataLoader, got int"):
        normalize_inputs(5, tiny_mlp())


def test_different_numbers_of_inputs_per_sample():
    data = [((torch.ones(1, 4),), 0), ((torch.ones(1, 4), torch.ones(1, 4)), 1)]
    with pytest.raises(InputError, match=r"different numbers of inputs: \[1, 2\]"):
        normalize_inputs(data, TwoInputs())


@pytest.mark.parametrize(
    ("count", "said"),
    [
        (1, "the one sample both calibrates and judges accuracy: nothing is held out"),
        (2, "2 sample(s), fewer than 5: 1 calibrate(s) and 1 is held out"),
        (4, "4 sample(s), fewer than 5: 3 calibrate(s) and 1 is held out"),
    ],
)
def test_fewer_than_five_samples_run_with_a_warning_saying_what_the_split_becomes(count, said):
    import warnings

    from speedster_dist.options import parse_run_options
    from speedster_dist.prepare import prepare

    data = [((torch.randn(1, 16),), 0) for _ in range(count)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = prepare(tiny_mlp(), data, parse_run_options())
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any(said in m and "at least 5" in m for m in messages), messages
    held_in = count if count == 1 else count - 1
    assert len(prepared.payload.calibration) == held_in


def test_five_samples_run_without_a_warning():
    import warnings

    from speedster_dist.options import parse_run_options
    from speedster_dist.prepare import prepare

    data = [((torch.randn(1, 16),), 0) for _ in range(5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        prepared = prepare(tiny_mlp(), data, parse_run_options())
    assert (len(prepared.payload.calibration), len(prepared.payload.validation)) == (4, 1)
