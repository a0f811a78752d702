from agentic_onnx.core.generation.stop_strings import StopStringMatcher


def feed_all(stops, chunks):
    matcher = StopStringMatcher(stops)
    shown = []
    for chunk in chunks:
        text, stopped = matcher.feed(chunk)
        shown.append(text)
        if stopped:
            return "".join(shown), True
    return "".join(shown) + matcher.flush(), False


def test_no_stop_strings_passes_text_through():
    assert feed_all([], ["ab", "cd"]) == ("abcd", False)


def test_stop_string_inside_one_chunk_cuts_before_it():
    assert feed_all(["END"], ["hello END world"]) == ("hello ", True)


def test_stop_string_spanning_chunks_never_reaches_the_user():
    matcher = StopStringMatcher(["</answer>"])
    assert matcher.feed("yes </ans") == ("yes ", False)  # "</ans" is held back
    assert matcher.feed("wer> tail") == ("", True)


def test_held_back_prefix_is_released_when_it_does_not_complete():
    matcher = StopStringMatcher(["STOP"])
    assert matcher.feed("a ST") == ("a ", False)
    assert matcher.feed("AR") == ("STAR", False)


def test_flush_returns_held_text_at_end_of_stream():
    assert feed_all(["xyz"], ["abc x"]) == ("abc x", False)


def test_earliest_of_several_stop_strings_wins():
    assert feed_all(["bb", "a"], ["cbba"]) == ("c", True)
