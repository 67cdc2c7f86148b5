import pytest

from speedster_dist.testing import models


@pytest.fixture(scope="package")
def bert_dir(tmp_path_factory):
    from transformers import PreTrainedModel

    folder = tmp_path_factory.mktemp("bert") / "tiny-bert"
    model = models.tiny_bert()
    assert isinstance(model, PreTrainedModel)
    model.save_pretrained(folder)
    models.minilm_tokenizer().save_pretrained(folder)
    return folder
