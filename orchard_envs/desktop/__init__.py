"""The desktop layer of `orchard/Desktop-v0`: an X display per episode, apps in a sandbox, pyautogui input.

`display` starts a jailed Xvfb in a sandbox's network namespace (the apps reach it through its abstract
socket there; the host through a socket in a host-only folder), `apps` starts the window manager and the
applications inside the sandbox, `actions` drives the display with pyautogui, `restricted` runs OSWorld's
code-string actions with nothing but pyautogui in reach, and `osworld` reads task configs and evaluators.
Importing this package starts nothing and loads neither Xlib nor pyautogui.
"""
