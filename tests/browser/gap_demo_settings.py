"""The demo's settings, on a channel layer that loses the events the gap test marks.

See :mod:`tests.browser.lossy_layer`.
"""

from demo_project.settings import *  # noqa: F403

CHANNEL_LAYERS = {"default": {"BACKEND": "tests.browser.lossy_layer.LossyChannelLayer"}}
