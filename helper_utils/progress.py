"""Progress bars that end as a line of text: live widgets while they run, plain text once closed.

In a notebook, tqdm draws its bars as ipywidgets, whose models live in the kernel. After a kernel
restart, or when a saved notebook is opened again, JupyterLab finds no model behind them and shows
"Error displaying widget: model not found" wherever a bar was. So here a notebook bar is shown
through a display handle, and when it closes, that output is replaced by the bar's last line as
plain text (or by nothing, for a bar made with ``leave=False``). A bar made ``under`` another is
drawn in the same output, below it, and leaves nothing when it closes. Outside a notebook this is
tqdm's own text bar, unchanged.
"""

from __future__ import annotations

from tqdm.auto import tqdm as _auto_tqdm
from tqdm.notebook import tqdm_notebook

__all__ = ["tqdm"]


def _in_notebook() -> bool:
    """Whether bars are notebook widgets (an IPython kernel with ipywidgets) rather than text."""
    return issubclass(_auto_tqdm, tqdm_notebook)


class tqdm(_auto_tqdm):  # noqa: N801  (a drop-in for tqdm.auto.tqdm)
    """``tqdm.auto.tqdm`` whose notebook widget turns into its final line of text when it closes.

    Args:
        under: a bar of this class to draw this one below, in the same output (e.g. an epoch's
            batches under the epochs); ignored outside a notebook.
        *args, **kwargs: as for tqdm.
    """

    def __init__(self, *args, under: "tqdm | None" = None, **kwargs) -> None:
        self._box = self._handle = self._under = None
        if not _in_notebook():
            super().__init__(*args, **kwargs)
            return
        super().__init__(*args, display=False, **kwargs)
        if self.disable:
            return
        import ipywidgets
        from IPython.display import display

        if under is not None and under._box is not None:
            self._under = under
            under._box.children += (self.container,)
        else:
            self._box = ipywidgets.VBox([self.container])
            self._handle = display(self._box, display_id=True)

    def close(self) -> None:
        was_open = not self.disable
        super().close()
        if not (was_open and _in_notebook()):
            return
        if self._under is not None:  # drawn inside another bar's output: just leave it
            self._under._box.children = tuple(c for c in self._under._box.children if c is not self.container)
        if self._handle is not None:
            self._handle.update({"text/plain": self.text_line() if self.leave else ""}, raw=True)
            self._box.close()
        self.container.close()

    def text_line(self) -> str:
        """The bar as one line of text, e.g. ``epochs: 100%|##########| 120/120 [04:08<00:00, 2.07s/epoch]``."""
        return self.format_meter(**{**self.format_dict, "ncols": None, "nrows": None})
