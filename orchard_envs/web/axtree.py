"""The page as text: an accessibility tree whose elements carry stable ids (`bid`s, BrowserGym's idea).

One node per line, two spaces of indent per depth: `[bid] role "name"` and then optional properties,
` key=value` or ` key="quoted value"` (value, checked, selected, disabled, focused, expanded, url). The
name and quoted values are JSON strings, so any text (quotes, newlines) survives `render_axtree` ->
`parse_axtree`. Text is a `StaticText` node; it carries the bid of the element
it sits in when that element has no node of its own (a `<span>` clicked as a link), else an empty bid.

The bids are assigned in the page by `EXTRACT_JS`: each element gets a `bid` attribute the first time it is
seen, so it keeps its bid across steps (until a navigation replaces the document). Roles are the ARIA
roles (an explicit `role` attribute, else the element's implicit one: `input type=search` is `searchbox`,
`select` is `combobox`, `a[href]` is `link` ...); names follow the accessible-name rules in short:
`aria-labelledby`, `aria-label`, a `<label>`, `alt`/`title`, the text inside (for buttons, links,
headings, options, cells), then `placeholder`. Elements with neither role nor name (plain `div`s) are left
out and their children move up a level, which keeps the tree short.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

BID_ATTRIBUTE = "bid"
PROPERTY_ORDER = ("value", "checked", "selected", "disabled", "focused", "expanded", "url")
_LINE_BREAKS = (0x85, 0x2028, 0x2029)
_BARE_VALUE = re.compile(r'[^\s"=\\]+')
_LINE = re.compile(r'^(?P<indent> *)\[(?P<bid>[a-z0-9]*)\] (?P<role>[A-Za-z]+) (?P<name>"(?:[^"\\]|\\.)*")')
_PROPERTY = re.compile(r' (?P<key>[a-z_]+)=(?P<value>"(?:[^"\\]|\\.)*"|[^\s"=\\]+)')


@dataclass(frozen=True)
class AXNode:
    """One element (or run of text) of the page's accessibility tree."""

    bid: str
    role: str
    name: str
    depth: int
    properties: dict[str, str] = field(default_factory=dict)


def _quote(text: str) -> str:
    """A JSON string that stays on one line even for `str.splitlines` (which also breaks at U+2028 ...)."""
    quoted = json.dumps(text, ensure_ascii=False)
    return quoted.translate({code: f"\\u{code:04x}" for code in _LINE_BREAKS})


def _value(text: str) -> str:
    return text if _BARE_VALUE.fullmatch(text) else _quote(text)


def render_line(node: AXNode) -> str:
    """One node as its line of the tree."""
    name = _quote(node.name)
    rank = {key: i for i, key in enumerate(PROPERTY_ORDER)}
    ordered = sorted(node.properties, key=lambda k: (rank.get(k, len(rank)), k))
    props = "".join(f" {key}={_value(node.properties[key])}" for key in ordered)
    return f"{'  ' * node.depth}[{node.bid}] {node.role} {name}{props}"


def render_axtree(nodes: list[AXNode]) -> str:
    """The tree as text, one node per line."""
    return "\n".join(render_line(node) for node in nodes)


def parse_axtree(text: str) -> list[AXNode]:
    """The nodes of a rendered tree (the inverse of `render_axtree`); other lines (the URL, tabs, an
    error message around the tree in an observation) are skipped."""
    nodes = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        properties = {}
        rest = line[match.end() :]
        while rest:
            prop = _PROPERTY.match(rest)
            if prop is None:
                break
            value = prop["value"]
            properties[prop["key"]] = json.loads(value) if value.startswith('"') else value
            rest = rest[prop.end() :]
        depth = len(match["indent"]) // 2
        nodes.append(AXNode(match["bid"], match["role"], json.loads(match["name"]), depth, properties))
    return nodes


def nodes_from_page(raw: list[dict]) -> list[AXNode]:
    """AXNodes from `EXTRACT_JS`'s result (a list of {bid, role, name, depth, props})."""
    return [
        AXNode(
            str(item.get("bid", "")),
            str(item["role"]),
            str(item.get("name", "")),
            int(item["depth"]),
            {str(k): str(v) for k, v in (item.get("props") or {}).items()},
        )
        for item in raw
    ]


# Runs in the page: `(prefix) => nodes`. Marks every element with a bid (kept across steps) and returns the
# visible tree. `prefix` tells frames apart (the main frame's is empty).
EXTRACT_JS = r"""
(prefix) => {
  const MAX_NAME = 200, MAX_NODES = 4000;
  const w = window;
  if (w.__orchardNextBid === undefined) w.__orchardNextBid = 1;
  const INPUT_ROLES = {button: 'button', submit: 'button', reset: 'button', image: 'button',
    checkbox: 'checkbox', radio: 'radio', range: 'slider', number: 'spinbutton', search: 'searchbox',
    email: 'textbox', tel: 'textbox', text: 'textbox', url: 'textbox', password: 'textbox',
    date: 'textbox', time: 'textbox', 'datetime-local': 'textbox', month: 'textbox', week: 'textbox',
    color: 'textbox', file: 'button'};
  const TAG_ROLES = {button: 'button', select: 'combobox', textarea: 'textbox', option: 'option',
    h1: 'heading', h2: 'heading', h3: 'heading', h4: 'heading', h5: 'heading', h6: 'heading',
    ul: 'list', ol: 'list', li: 'listitem', table: 'table', tr: 'row', td: 'cell', th: 'columnheader',
    form: 'form', nav: 'navigation', main: 'main', dialog: 'dialog', img: 'img', label: 'LabelText',
    p: 'paragraph', iframe: 'iframe', fieldset: 'group', legend: 'legend', header: 'banner',
    footer: 'contentinfo', aside: 'complementary', progress: 'progressbar', svg: 'graphics',
    canvas: 'canvas'};
  const NAME_FROM_TEXT = new Set(['button', 'link', 'heading', 'option', 'cell', 'columnheader',
    'listitem', 'menuitem', 'tab', 'treeitem', 'checkbox', 'radio', 'LabelText', 'legend', 'switch']);
  const clean = (s) => (s || '').replace(/\s+/g, ' ').trim().slice(0, MAX_NAME);
  const roleOf = (el) => {
    const explicit = el.getAttribute('role');
    if (explicit) return explicit.split(' ')[0];
    const tag = el.tagName.toLowerCase();
    if (tag === 'input') return INPUT_ROLES[(el.getAttribute('type') || 'text').toLowerCase()] || null;
    if (tag === 'a') return el.hasAttribute('href') ? 'link' : null;
    if (tag === 'section') return el.hasAttribute('aria-label') ? 'region' : null;
    if (el.isContentEditable && (!el.parentElement || !el.parentElement.isContentEditable)) return 'textbox';
    return TAG_ROLES[tag] || null;
  };
  const byIds = (ids) => ids.split(/\s+/).map((id) => document.getElementById(id))
    .filter(Boolean).map((e) => e.innerText || e.textContent).join(' ');
  const nameOf = (el, role) => {
    if (el.hasAttribute('aria-labelledby')) {
      const n = clean(byIds(el.getAttribute('aria-labelledby'))); if (n) return n;
    }
    const aria = clean(el.getAttribute('aria-label')); if (aria) return aria;
    if (el.labels && el.labels.length) {
      const n = clean(Array.from(el.labels).map((l) => l.innerText || l.textContent).join(' '));
      if (n) return n;
    }
    const tag = el.tagName.toLowerCase();
    if (tag === 'input' && ['button', 'submit', 'reset'].includes(el.type)) return clean(el.value || el.type);
    const alt = clean(el.getAttribute('alt')); if (alt) return alt;
    if (role && NAME_FROM_TEXT.has(role)) {
      const t = clean(el.innerText || el.textContent); if (t) return t;
    }
    const title = clean(el.getAttribute('title')); if (title) return title;
    return clean(el.getAttribute('placeholder'));
  };
  const hidden = (el) => {
    if (el.getAttribute('aria-hidden') === 'true' || el.hidden) return true;
    const style = w.getComputedStyle(el);
    return style.display === 'none' || style.visibility === 'hidden';
  };
  const out = [];
  const focused = document.activeElement;
  const walk = (node, depth, parentNamed, hostBid) => {
    if (out.length >= MAX_NODES) return;
    if (node.nodeType === Node.TEXT_NODE) {
      const text = clean(node.textContent);
      if (text && !parentNamed) out.push({bid: hostBid, role: 'StaticText', name: text, depth, props: {}});
      return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    const el = node, tag = el.tagName.toLowerCase();
    if (['script', 'style', 'noscript', 'template', 'head'].includes(tag) || hidden(el)) return;
    if (!el.hasAttribute('bid')) el.setAttribute('bid', prefix + (w.__orchardNextBid++));
    const role = roleOf(el);
    let next = depth, named = parentNamed;
    if (role) {
      const name = nameOf(el, role);
      const props = {};
      if (['textbox', 'searchbox', 'combobox', 'slider', 'spinbutton'].includes(role) && 'value' in el) {
        props.value = tag === 'select' ? clean(el.options[el.selectedIndex]?.text) : String(el.value);
      }
      if (role === 'checkbox' || role === 'radio' || role === 'switch') {
        const aria = el.getAttribute('aria-checked') === 'true';
        props.checked = String(el.checked === undefined ? aria : el.checked);
      }
      if (role === 'option' && el.selected !== undefined) props.selected = String(el.selected);
      if (el.disabled || el.getAttribute('aria-disabled') === 'true') props.disabled = 'true';
      if (el === focused) props.focused = 'true';
      if (el.hasAttribute('aria-expanded')) props.expanded = el.getAttribute('aria-expanded');
      if (role === 'link') props.url = el.getAttribute('href');
      out.push({bid: el.getAttribute('bid'), role, name, depth, props});
      next = depth + 1;
      named = NAME_FROM_TEXT.has(role) && name !== '';
    }
    if (tag === 'select' || tag === 'iframe') {
      if (tag === 'select') for (const opt of el.options) walk(opt, next, false, '');
      return;
    }
    // text directly in an element left out of the tree (a <span>) carries that element's bid
    const host = role ? '' : el.getAttribute('bid');
    for (const child of el.childNodes) walk(child, next, named, host);
    if (el.shadowRoot) for (const child of el.shadowRoot.childNodes) walk(child, next, named, host);
  };
  out.push({bid: '', role: 'RootWebArea', name: clean(document.title), depth: 0, props: {}});
  if (document.body) for (const child of document.body.childNodes) walk(child, 1, false, '');
  const f = document.activeElement;
  const fbid = f && f !== document.body && f.getAttribute ? (f.getAttribute('bid') || '') : '';
  return {nodes: out, focused: fbid};
}
"""
