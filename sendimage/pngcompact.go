package sendimage

// LevelCompact is for files that are kept (ComfyUI's SaveImage): flate
// level 3, or level 7 when a sample of the image compresses 20 times or
// more at level 3. Measured in one run against Pillow's level 4 (README,
// "Outputs"): on the 2048² photo level 3 took a fifth of Pillow's CPU time
// for a 2.5% smaller file, level 7 85% of it for 7% smaller; on a flat
// image level 3 was 4.7 times Pillow's size, level 7 3% smaller at half
// Pillow's CPU time. Flat images are where level 7 is both cheap and much
// smaller, and a sample tells them apart: at level 3 the photo shrinks to
// 0.44 of its filtered bytes, the flat image to 0.006.
const LevelCompact Level = -3

// The levels LevelCompact chooses between, and the sample ratio that
// picks the higher one.
const (
	compactLevel     = 3
	compactFlatLevel = 7
	compactFlatRatio = 20
)

// levelAutoCompact stands for LevelCompact until an image's sample decides.
const levelAutoCompact = -101

// chooseCompact compresses a sample of r's filtered rows at level 3 and
// returns 7 when it shrank compactFlatRatio times or more, else 3.
func (st *pngState) chooseCompact(r *rows) int {
	sample := st.sample(r)
	if probeSize(compactLevel, sample)*compactFlatRatio <= int64(len(sample)) {
		return compactFlatLevel
	}
	return compactLevel
}
