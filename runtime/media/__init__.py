"""Media: untrusted image bytes in (`decode`), result PNGs and COCO RLE out (`render`), atomic files.

Depends on no other room (only the runtime's kernel): the HTTP edge, the tools and the exporter all decode
and render through it, so an upload and a file on disk are judged and written the same way.
"""
