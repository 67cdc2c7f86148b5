"""The rebench kit: round trip, no pickles copied, tampering refused."""

import pytest

from speedster_dist.artifacts import ArtifactError, read_kit, write_kit
from speedster_dist.fleet import detect_inputs, detect_model, read_inputs, read_model


def test_the_kit_round_trips_and_refuses_tampering(bert_dir, tmp_path):
    (bert_dir.parent / "texts.jsonl").write_text('"hello"\n')
    (bert_dir / "pytorch_model.bin").write_bytes(b"a pickle that must not be copied")
    model = detect_model(bert_dir)
    inputs = detect_inputs(bert_dir.parent / "texts.jsonl", model, max_length=8)
    root = write_kit(tmp_path / "learner", "tiny", model, inputs, {"metric_drop_ths": 0.05})
    assert not (root / "model" / "pytorch_model.bin").exists()
    kit = read_kit(tmp_path / "learner")
    assert kit.model_name == "tiny" and kit.model.kind == "hf"
    assert kit.inputs.tokenizer == kit.model.path and kit.inputs.max_length == 8
    assert kit.options == {"metric_drop_ths": 0.05}
    texts, _, _ = read_inputs(kit.inputs)
    assert texts == ["hello"]
    assert read_model(kit.model).config.hidden_size == 32
    (root / "inputs.jsonl").write_text('"changed"\n')
    with pytest.raises(ArtifactError, match="does not match its checksum"):
        read_kit(tmp_path / "learner")
    with pytest.raises(ArtifactError, match="no rebench kit"):
        read_kit(tmp_path)
