"""Folders of images: `scan` finds the duplicates among their files with the service's own
matching, in this process; `index` loads them into a running service over HTTP."""
