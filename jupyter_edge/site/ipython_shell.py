"""IPython's own display machinery in a site's runner.

IPython's ``display()`` prints ``<IPython.core.display.HTML object>`` unless an
``InteractiveShell`` exists; with one, it formats each object with the shell's
``display_formatter`` and hands the result to its ``display_pub``. A runner
gets a shell with just those two parts: IPython's formatters (so ``HTML``,
``Image``, pandas, widgets' fallbacks and anything with ``_repr_*_`` come out as
a notebook shows them) and a publisher that sends to the cell running now.
It has the shell's event registry too, for the libraries that look for a shell
and register with it (matplotlib). The full shell's start (history database, profile folder in the home
directory, builtins, ``sys.modules['__main__']``) has no place at a site.
"""

from __future__ import annotations

import importlib.util
import logging

from .display import figure_png, publish

logger = logging.getLogger(__name__)


def install() -> bool:
    """Make IPython's ``display`` work in this process; ``False`` without IPython."""
    if importlib.util.find_spec("IPython") is None:
        return False
    from IPython.core.interactiveshell import InteractiveShell

    if not InteractiveShell.initialized():
        try:
            _site_shell_class().instance()
        except Exception:  # an IPython whose insides differ: the site's own display still works
            logger.warning("IPython's display cannot be set up at this site; cells get the site's own", exc_info=True)
            return False
    return True


def _site_shell_class():
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.events import EventManager, available_events
    from IPython.core.formatters import DisplayFormatter
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Configurable

    class SitePublisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            publish(data)

        def clear_output(self, wait=False):
            pass  # outputs at a site are a stream: nothing shown can be taken back

    class SiteShell(InteractiveShell):
        def __init__(self, **kwargs):
            # Only what display() and clear_output() use; see the module's docstring.
            Configurable.__init__(self, **kwargs)
            # Libraries that find a shell register callbacks (matplotlib's pyplot does);
            # nothing here runs cells, so they are kept and never fire.
            self.events = EventManager(self, available_events)
            self.display_formatter = DisplayFormatter(parent=self)
            self.display_formatter.formatters["image/png"].for_type_by_name("matplotlib.figure", "Figure", figure_png)
            self.display_pub = SitePublisher()  # no shell: it has no execution events to follow

    return SiteShell
