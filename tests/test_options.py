import pytest

from agentic_onnx.core.errors import ExitCode, UsageError
from agentic_onnx.core.generation.options import DEFAULT_MAX_TOKENS, build_options


def test_defaults_are_greedy_with_the_default_budget():
    options = build_options()
    assert options.greedy
    assert options.max_tokens == DEFAULT_MAX_TOKENS
    assert options.stop == ()


def test_empty_stop_strings_are_dropped():
    assert build_options(stop=["", "###"]).stop == ("###",)


@pytest.mark.parametrize(
    ("name", "value", "flag"),
    [("temperature", -0.1, "--temperature"), ("top_p", 0.0, "--top-p"), ("top_p", 1.5, "--top-p"),
     ("max_tokens", 0, "--max-tokens"), ("top_k", 0, "--top-k"), ("seed", -1, "--seed")],
)
def test_out_of_range_option_is_a_usage_error_naming_the_flag(name, value, flag):
    with pytest.raises(UsageError) as caught:
        build_options(**{name: value})
    assert flag in caught.value.one_line()
    assert caught.value.exit_code == ExitCode.USAGE_ERROR
