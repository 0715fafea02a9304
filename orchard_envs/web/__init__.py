"""The browser side of `orchard/Web-v0`: the AX tree with stable element ids, the Playwright runtime, the
actions (tool calls and BrowserGym's action strings) and the navigation guard.

Importing this package loads nothing heavy: Playwright is imported by `runtime` when a browser starts.
"""
