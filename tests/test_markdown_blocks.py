from agentic_onnx.cli.render import MarkdownBlocks


def stream(text: str, size: int) -> tuple[list[str], str]:
    blocks = MarkdownBlocks()
    finished = []
    for start in range(0, len(text), size):
        finished += blocks.add(text[start:start + size])
    return finished, blocks.tail


def test_paragraphs_are_finished_at_blank_lines_whatever_the_chunking():
    text = "# Title\nintro line\n\nsecond para\n\nthird"
    for size in (1, 3, 7, len(text)):
        finished, tail = stream(text, size)
        assert finished == ["# Title\nintro line", "second para"]
        assert tail == "third"


def test_blank_lines_inside_a_code_fence_do_not_split_it():
    text = "```python\na = 1\n\nb = 2\n```\nafter"
    finished, tail = stream(text, 2)
    assert finished == ["```python\na = 1\n\nb = 2\n```"]
    assert tail == "after"


def test_finished_blocks_and_tail_reassemble_the_text():
    text = "a\n\n- x\n- y\n\n```\ncode\n```\n\nend\n"
    finished, tail = stream(text, 4)
    assert "\n\n".join([*finished, tail]).split() == text.split()
