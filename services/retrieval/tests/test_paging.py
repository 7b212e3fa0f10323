"""Page tokens: only what a previous response handed out is accepted (issue 14: a 500 found by fuzzing)."""

from __future__ import annotations

import pytest
from genai_core.errors import InvalidArgument
from genai_core.limits import RETRIEVAL
from genai_retrieval.paging import paginate


def test_pages_and_tokens():
    first = paginate(list("abcde"), "", 2)
    assert (first.items, first.next_page_token) == (["a", "b"], "2")
    last = paginate(list("abcde"), "4", 2)
    assert (last.items, last.next_page_token) == (["e"], "")


@pytest.mark.parametrize("token", ["abc", "4²", "٣", "-1", "1.5"])  # "4²" and "٣" pass str.isdigit()
def test_a_token_it_did_not_hand_out_is_invalid(token):
    with pytest.raises(InvalidArgument) as info:
        paginate(list("abc"), token, 2)
    assert info.value.field_violations[0].field == "page_token"


def test_page_size_is_bounded():
    with pytest.raises(InvalidArgument):
        paginate(list("abc"), "", RETRIEVAL.max_page_size + 1)
