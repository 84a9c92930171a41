"""Graders of notebook 06 (``test_query_embedding``, ``test_get_embeddings``, ``test_find_closest``) against the
answers in mutants_visual_search."""

import mutants_visual_search as m
from harness import Grader, grader_tests, hint_tests

from helper_utils.reference import find_closest, get_embeddings, get_query_img_embedding

GRADERS = {
    "test_query_embedding": Grader(get_query_img_embedding, m.QUERY_CORRECT, m.QUERY_STUBS, m.QUERY_MUTANTS),
    "test_get_embeddings": Grader(get_embeddings, m.EMBEDDINGS_CORRECT, m.EMBEDDINGS_STUBS, m.EMBEDDINGS_MUTANTS),
    "test_find_closest": Grader(find_closest, m.CLOSEST_CORRECT, m.CLOSEST_STUBS, m.CLOSEST_MUTANTS),
}
globals().update(grader_tests(GRADERS))

HINTS = [  # (grader, mutant, words its hint must say)
    ("test_query_embedding", m.query_no_eval, "encoder.eval()"),
    ("test_query_embedding", m.query_squeezed, "keep the batch dimension"),
    ("test_query_embedding", m.query_no_unsqueeze, "unsqueeze(0)"),
    ("test_get_embeddings", m.embeddings_shuffled, "shuffle=False"),
    ("test_get_embeddings", m.embeddings_drop_last, "drop_last"),
    ("test_get_embeddings", m.embeddings_stacked_batches, "np.concatenate"),
    ("test_get_embeddings", m.embeddings_no_default, "default"),
    ("test_find_closest", m.closest_descending, "farthest first"),
    ("test_find_closest", m.closest_cosine, "not cosine similarity"),
    ("test_find_closest", m.closest_manhattan, "not Manhattan"),
    ("test_find_closest", m.closest_returns_distances, "not the distances"),
    ("test_find_closest", m.closest_k_plus_one, "off by one"),
    ("test_find_closest", m.closest_argmax, "np.argsort"),
]
globals().update(hint_tests(HINTS))


def test_an_answer_that_modifies_its_inputs_does_not_change_later_gradings(capsys):
    import unittests

    for _ in range(3):
        assert not unittests.test_find_closest(m.closest_in_place)
    assert not unittests.test_find_closest(m.closest_dot)  # still judged on the grader's own catalog
    assert unittests.test_find_closest(m.closest_tutorial)
