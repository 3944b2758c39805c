"""Caption sentence similarity (all-MiniLM-L6-v2 through transformers) against
sentence-transformers' own encoder, and on a tiny config-built BERT."""
import numpy as np
import pytest

from gr_semcom.semantic import text_similarity as ts

SENTS = ["a cat lying on a blanket", "a cup of coffee on a table", "a kitten resting on a soft rug",
         "", "the stock market fell sharply today"]


def test_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    d = ts.default_model_dir()
    ref = st.SentenceTransformer(str(d), device="cpu", local_files_only=True).encode(SENTS, normalize_embeddings=True)
    got = ts.SentenceEncoder(d).encode(SENTS)
    assert np.max(np.abs(got - ref)) < 1e-5
    sim = ts.sentence_similarity(SENTS[:3], [SENTS[2], SENTS[2], SENTS[0]])
    assert sim[0] > sim[1] + 0.3  # paraphrase close, unrelated far
    assert sim[2] == pytest.approx(sim[0], abs=1e-6)  # symmetric


def test_tiny_config_built_model_and_errors(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "dog", "on", "mat"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab))
    BertTokenizerFast(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path)
    s = ts.sentence_similarity(["a cat on a mat"], ["a cat on a mat"], model_dir=tmp_path)
    assert s[0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError):
        ts.sentence_similarity(["a"], [], model_dir=tmp_path)
    with pytest.raises(ts.MissingSentenceModel):
        ts.SentenceEncoder(tmp_path / "nothing")
