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



def final_screen(raw: str, columns: int = 80, lines: int = 60) -> str:
    """What a VT100 terminal shows after receiving `raw` (cursor moves and erases applied)."""
    import pyte

    screen = pyte.Screen(columns, lines)
    stream = pyte.Stream(screen)
    stream.feed(raw.replace("\n", "\r\n"))
    return "\n".join(line.rstrip() for line in screen.display).strip()


def test_live_stream_shows_every_block_once_and_leaves_no_status_line():
    import io

    from rich.console import Console

    from agentic_onnx.cli.render import LiveMarkdownStream

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80)
    answer = "# Plan\n\nFirst **bold** step.\n\n```python\nx = 1\n\ny = 2\n```\n\nLast line"
    with LiveMarkdownStream(show_status=True, console=console) as view:
        for start in range(0, len(answer), 3):
            view.add(answer[start:start + 3])
    shown = final_screen(out.getvalue())
    for words in ("Plan", "First bold step.", "x = 1", "y = 2", "Last line"):
        assert shown.count(words) == 1, shown
    assert shown.index("Plan") < shown.index("First") < shown.index("x = 1") < shown.index("Last")
    assert "tokens/s" not in shown  # the status line is transient
    assert "**" not in shown and "```" not in shown  # rendered as Markdown, not raw


def test_a_block_taller_than_the_terminal_is_drawn_from_its_last_screenful():
    import io

    from rich.console import Console

    from agentic_onnx.cli.render import LiveMarkdownStream

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, height=12)
    code = "```python\n" + "\n".join(f"line_{i} = {i}" for i in range(60)) + "\n```"
    with LiveMarkdownStream(show_status=False, console=console) as view:
        view.add(code[:-4])  # the fence is still open: one unfinished block
        visible = view._visible_tail()
        assert visible.split("\n")[0] == "```python"  # still rendered as code
        assert len(visible.split("\n")) <= 12 and visible.endswith("line_59 = 59")
        view.add(code[-4:])
    shown = out.getvalue()
    assert "line_0 = 0" in shown and "line_59 = 59" in shown  # the final print is whole


def test_a_slow_first_render_does_not_freeze_the_live_view():
    """The first code block imports the highlighter (a one-off cost of tens of ms, seconds on a
    busy machine); the pause after it stays bounded, so text and status keep moving."""
    import io

    from rich.console import Console

    from agentic_onnx.cli.render import LiveMarkdownStream

    clock = {"now": 0.0}
    refreshes: list[float] = []

    class Paced(LiveMarkdownStream):
        @staticmethod
        def clock() -> float:
            return clock["now"]

        def _live_view(self, now: float):  # noqa: ANN202 - each redraw: a fake cost on the clock
            refreshes.append(now)
            clock["now"] += 3.0 if len(refreshes) == 1 else 0.001  # the one-off cost first
            return super()._live_view(now)

    console = Console(file=io.StringIO(), force_terminal=True, width=60, height=20)
    with Paced(show_status=True, console=console) as view:
        for _ in range(200):
            view.add("x ")
            clock["now"] += 0.01  # one token every 10 ms
    gaps = [later - earlier for earlier, later in zip(refreshes[1:], refreshes[2:])]
    assert refreshes and max(gaps) <= LiveMarkdownStream.MAX_INTERVAL_S + 0.011
    assert LiveMarkdownStream.pause(3.0) == LiveMarkdownStream.MAX_INTERVAL_S
    assert LiveMarkdownStream.pause(0.0001) == LiveMarkdownStream.MIN_INTERVAL_S
    assert abs(LiveMarkdownStream.pause(0.003) - 0.2) < 1e-9  # 1.5% of the time rendering
