"""Self-hosted web sites (shop, webmail, travel, wiki) and the `web-mini` suite for `orchard/Web-v0`."""
