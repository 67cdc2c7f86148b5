import pytest

from speedster_dist.testing import models


@pytest.fixture(scope="package")
def bert_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert") / "tiny-bert"
    models.tiny_bert().save_pretrained(folder)
    models.minilm_tokenizer().save_pretrained(folder)
    return folder
