import numpy as np
import torch

from emotion_gcn import embeddings
from emotion_gcn.model import EmotionGCN, FoldedEmotionGCN, MultiTask, SingleTask, gen_adj


def graph():
    r = np.eye(9) * 0.3
    r[:7, 7:] = 0.35
    r[7:, :7] = 0.1
    r[7:, 7:] = np.eye(2) * 0.3
    return r


def test_emotion_gcn_gives_7_logits_and_2_va_and_a_9x1024_classifier_matrix():
    z, _ = embeddings.load("default")
    m = EmotionGCN(z, graph(), "tiny").eval()
    logits, va = m(torch.randn(2, 3, 227, 227))
    assert logits.shape == (2, 7) and va.shape == (2, 2)
    assert m.classifiers().shape == (9, 1024)
    assert z.shape == (9, 384)


def test_densenet121_features_give_a_1024_vector_at_227():
    z, _ = embeddings.load("default")
    m = EmotionGCN(z, graph(), "densenet121").eval()
    with torch.no_grad():
        assert m.embed(torch.randn(1, 3, 227, 227)).shape == (1, 1024)


def test_the_folded_head_equals_the_gcn_output():
    z, _ = embeddings.load("default")
    m = EmotionGCN(z, graph(), "tiny").eval()
    f = FoldedEmotionGCN(m).eval()
    x = torch.randn(3, 3, 227, 227)
    with torch.no_grad():
        a, b = m(x), f(x)
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)
    assert torch.allclose(f.head.weight, m.classifiers(), atol=0)


def test_gen_adj_of_a_row_stochastic_matrix_is_its_transpose():
    a = torch.tensor(graph() / graph().sum(1, keepdims=True), dtype=torch.float32)
    assert torch.allclose(gen_adj(a), a.t(), atol=1e-6)


def test_baselines_have_the_same_outputs():
    x = torch.randn(1, 3, 227, 227)
    for m in (MultiTask("tiny"), SingleTask("tiny")):
        logits, va = m.eval()(x)
        assert logits.shape == (1, 7) and va.shape == (1, 2)


def test_a_glove_file_is_read_for_the_nine_words(tmp_path):
    p = tmp_path / "glove.txt"
    words = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "valence", "arousal", "table"]
    p.write_text("".join(f"{w} " + " ".join(str(i + k * 0.1) for k in range(5)) + "\n" for i, w in enumerate(words)))
    z, src = embeddings.load(str(p))
    assert z.shape == (9, 5) and z[1, 0] == 1.0 and "GloVe" in src
