"""Model: a verified model directory and the VREyeSAM procedure around its two graphs.

Reads the model directory once (sha256 of the very bytes used, decryption in memory), chooses the
precision variant, builds the graphs through the engines room, self-tests them on the golden sample, and
runs the procedure as named stages (`segmenter`). Depends on the engines room and the runtime's kernel
(manifest, vocabulary, settings); never on the HTTP edge or the tools.
"""
