package control

// MaxDepth bounds how deeply arrays and maps may nest in a frame. The
// msgpack decoder recurses once per level: without a bound a 4 MiB frame of
// nested arrays overflows the goroutine stack, which no recover catches.
const MaxDepth = 32
