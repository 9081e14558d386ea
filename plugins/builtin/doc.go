// Package builtin is nodecast's built-in node pack: the ComfyUI node classes
// that load, make and batch images, and the sender nodes that push images to
// clients over the WebSocket. Class names, inputs, defaults and results are
// those of ComfyUI and of the node packs that defined them, so existing
// workflows run unchanged:
//
//	LoadImage, EmptyImage, ImageBatch,
//	SaveImage, PreviewImage                        ComfyUI nodes.py
//	RepeatImageBatch                               ComfyUI comfy_extras
//	SaveImageWebsocket                             ComfyUI's websocket_image_save example
//	ETN_LoadImageBase64, ETN_LoadMaskBase64,
//	ETN_SendImageWebSocket                         comfyui-tooling-nodes (Acly)
//	NTL_LoadImageBase64, NTL_LoadMaskBase64,
//	NTL_LoadImagesBase64, NTL_SendImageWebSocket,
//	NTL_SendImagesWebSocket                        the ntlb64part rewrite of those
//	SendImageOnWebSocket                           ComfyUI-TensorOps, with nodecast's
//	                                               encoder, wire and part_size inputs
//
// Loaders check an image's header against the host's limits (call.Limits.Image)
// before decoding a pixel, and the size of every batch they make against
// Options.MaxBatchPixels. They read PNG (8 and 16 bits), JPEG, GIF (an
// animation becomes a batch of its frames, as in ComfyUI), WebP, BMP and TIFF;
// 8-bit non-interlaced PNGs by a decoder of their own (pngdecode.go: klauspost
// inflate beside the unfiltering, checked against image/png), others by image/png.
// RepeatImageBatch, and ImageBatch of alike images, return views that share
// their inputs' memory.
// IMAGE tensors keep the file's 8-bit samples (protocol.Unorm8), standing for
// the floats ComfyUI's numpy code makes of them (v/255 in float32), which a
// node that computes in floats gets, converted once; MASK is 1 - alpha, or a 64×64 zero mask for images without
// alpha. Where nodecast differs from ComfyUI + Pillow:
//   - EXIF orientation is not applied: JPEGs are used as stored.
//   - 16-bit samples keep their high byte, which is what Pillow does for 16-bit
//     RGB(A); for 16-bit greyscale Pillow's result depends on its version.
//   - A palette image given to ETN_LoadMaskBase64 gives the red of each pixel's
//     colour, where numpy would give the palette index.
//   - ImageBatch resizes in float32 with torch's bilinear rule
//     (align_corners=False, no antialiasing), not through an 8-bit image
//     library, so it matches common_upscale(..., "bilinear", "center").
//
// Senders go through sendimage.Send, which converts, encodes, splits into
// parts that fit call.Limits.MessageLimit, emits them through the call's
// Emitter and reports progress per image; every check (event name, encoder,
// tensor shape and limits, NaN, part size) happens before the first part is
// emitted.
//
// LoadImage reads from the folder named by $NODECAST_INPUT_DIR (or
// Options.InputDir), through os.Root, so neither "..", absolute paths nor
// symbolic links reach outside it. SaveImage writes into
// $NODECAST_OUTPUT_DIR and PreviewImage into $NODECAST_TEMP_DIR the same
// way, naming files as ComfyUI does and writing each through a temporary
// file hard-linked to its name, so concurrent writers never share a name.
//
// This package imports protocol, plugins (the SDK types only) and sendimage.
// It must never import host or anything under it: the host loads packs, packs
// do not know the host.
package builtin
