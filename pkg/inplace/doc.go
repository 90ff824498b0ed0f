// Package inplace rewrites the only rootfs slot of a small device with a
// new release, seeded by the very release it overwrites, so that a power
// cut at any moment leaves a state from which a new run finishes the job.
//
// # API
//
// [NewPlan] is pure: from the old release's index (what the device holds),
// the new release's index and a RAM budget it derives the ordered list of
// operations, which chunks are stashed in RAM or spilled, the peak RAM and
// the spill size. [Apply] runs a plan on a [Target] (a blockdev.Device, or
// anything that reads, writes and flushes), taking chunks the old release
// lacks from [Sources] (other seeds, then stores), keeping its progress in
// a [Journal] on the data partition and spilled chunks in a spill area
// (another Target, such as a [SyncFile] on the data partition). It returns
// [Stats]: chunks verified in place, moved, from RAM and spill, zeroed,
// fetched (and their bytes), fallbacks, commits and journal writes.
//
// # Plan
//
// Each chunk position of the new release is either in place (the old
// release has the same chunk at the same offset: an [OpVerify] checks it
// and nothing is written), zeros, a chunk the old release has elsewhere (a
// move), or a chunk it lacks (a fetch). A distinct chunk is one node,
// written to all its positions by one op. A moved chunk is read from a
// position where it is in place, if there is one (that range is never
// written), else from the old copy that the fewest moves overwrite. A move
// whose targets overlap another move's source must wait until that source
// is read: an edge of a dependency graph. The moves are emitted in
// topological order (first-ready first, ties by first appearance in the new
// index); when every move left waits, the plan takes the first waiting
// move and stashes each chunk it waits for: an [OpStash] reads it into RAM
// while the stashed bytes stay within the budget, an [OpSpill] past it
// copies it to the spill area (append-only, so a slot is never reused
// during the update). A stashed chunk's readers no longer wait for it, so
// the cycle is broken. Zeros and fetches overwrite nothing still needed and
// come last. A move whose target overlaps its own source reads it before
// writing, within the op.
//
// Commits: an op gets [Op.Commit] when it writes over a device range that
// an op since the previous commit read (a move from the device, a spill),
// or when PlanOptions.CommitBytes were written since. Apply commits before
// such an op: it flushes the device, flushes the spill area, and only then
// records in the journal how many ops are done. So within the ops run
// since a commit, no op destroys another's source, and a power cut can
// only lose, or leave half-written, ops after the last recorded commit.
//
// The plan is deterministic (no map iteration decides anything), and its
// ID is the SHA-256 of its ops: a run resumed after a cut plans again,
// finds the same ID in the journal and goes on from its position.
//
// # Journal
//
// The journal is one file of [JournalSize] bytes, replaced with
// durable.WriteFile (never a torn mix): the magic "LBINPJ01", the plan ID
// (32 bytes), the number of ops done and the number of ops (uint64, little
// endian), and a CRC-32C (Castagnoli) of all that. It is written only after
// the device and the spill area are flushed. A journal that does not parse,
// or names another plan, makes Apply start from op 0, which is safe: see
// below.
//
// # Trust
//
// Nothing read from the device, the spill area or a seed is used without
// hashing it against its chunk ID. Ops before the journal's position are
// trusted by the journal's record and not read again during the run (their
// data was flushed before the record was written; re-hashing all of them
// at each resume would cost a full read per cut), but Apply ends with a
// check that reads and verifies every chunk of the new release, writing
// again from a seed or store any that does not verify: the device is whole
// and verified when Apply returns nil, whatever the journal said.
//
// After a cut, the ops from the journal's position to the next commit may
// be done, half done or not done. They run again; each first looks for its
// chunk in its own targets (a target that verifies is kept, and serves as
// the source), so a chunk fetched before the cut whose write reached the
// device is not fetched again, even if its commit was not recorded. A
// chunk whose op the journal records is never fetched again; at most
// CommitBytes of fetched chunks, written but not yet committed, may be.
// Chunks spilled before the cut are read back from the spill area and
// verified. Chunks stashed in RAM are lost with the power: their move reads
// the old copy if it still verifies, and else fetches the chunk (a chunk of
// the new release, so the store has it); so is a moved chunk whose target
// overlaps its own source and whose write the cut tore. These are chunks of
// the old release, never fetched before, and at most the RAM budget plus
// one chunk per cut.
//
// Apply uses, besides the stash, four buffers of the largest chunk.
package inplace
