// Package sendimage turns ComfyUI image tensors into encoded images and hands
// them, in parts that fit a WebSocket message, to an Emitter. It is the
// logic behind the built-in sender nodes, which plugins wraps as nodes.
//
// Three pieces, usable apart:
//
//   - Conversion: NewImages checks an IMAGE tensor [B,H,W,C] (shape, limits,
//     NaN/±Inf) and converts one image at a time to Pixels exactly as
//     ComfyUI does, uint8(clip(255*x, 0, 255)), truncating. Pixels
//     implements image.Image, so any encoder accepts it. ImageToTensor and
//     AlphaMask go the other way, as ComfyUI's loaders do; importing
//     sendimage registers the decoders of the files they read (IsImageFile
//     tells them by extension).
//   - Encoders: a Registry of EncoderFactory by name, with Default holding
//     png (the default), jpeg, bmp, tiff, webp (lossy, gen2brain/webp:
//     libwebp, loaded or as WebAssembly), webp-lossless (nativewebp, pure
//     Go) and raw (netpbm PPM/PGM/PAM: the pixels behind a text header). The PNG
//     encoder is this package's own: the Up filter on every row and
//     klauspost/compress flate at level 1, compressed in parallel stripes
//     for large images, several times faster than image/png; as a
//     TextEncoder it also writes tEXt/iTXt chunks, as Pillow's PngInfo does.
//   - Send: checks everything it can before emitting anything, then per
//     image converts, encodes, hashes, splits with protocol.Splitter and
//     emits the parts, then reports progress. Images of the batch that are
//     the same memory (Images.SameAs) are converted, encoded and hashed once.
//
// sendimage imports only the standard library, golang.org/x/image,
// klauspost/compress, the two WebP libraries and nodecast's protocol. It must never import plugins
// or host: they depend on it, not the other way round.
package sendimage
