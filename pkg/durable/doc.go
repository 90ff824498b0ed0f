// Package durable updates state files so that they survive a power cut, and
// provides Crash, a fake file system that proves it.
//
// # Guarantee
//
// [WriteFile] replaces a file atomically and durably: it writes the new
// content to a temporary file in the same directory, fsyncs it, closes it,
// renames it over the target, fsyncs it again by its new name, and fsyncs
// the directory. (The second fsync is for FAT, such as an ESP holding
// grubenv: there the directory entry a rename fills in is written back with
// the file's inode, not with the directory, while the directory's fsync
// already frees the replaced file's clusters; without it a cut can leave
// the name on freed clusters.) Once it returns nil
// the new content survives a power cut. If the power is cut while it runs,
// after reboot the target holds either its complete old content or the
// complete new content: never a mix, never a prefix, never empty or missing
// when an old content existed. A cut may leave a temporary file behind;
// [Clean] removes such files and callers run it at start-up. The directory
// itself must already be durable (see [MkdirAll]).
//
// All file access goes through the small [FS] interface: [OS] is the real
// implementation over a directory, [Crash] the fake.
//
// # Crash model
//
// Crash is an in-memory file system with a volatile cache in front of its
// "disk". Every file and directory keeps the content it had when last synced
// (its durable version) followed by the versions produced by each later
// change. The rules:
//
//   - File data. Each File.Write of at least one byte, and each OpenFile
//     with O_TRUNC of a non-empty file, makes a new version of the file's
//     data. File.Sync (or a write through O_SYNC) makes the current version
//     durable. A file never synced has durable content empty. Close makes
//     nothing durable.
//   - Directory entries. Each create (OpenFile with O_CREATE of a missing
//     name, MkdirAll), Rename and Remove makes a new version of the entries
//     of the directory it changes; a Rename between two directories changes
//     both, independently. SyncDir(dir) makes dir's current entries durable.
//     Syncing a file does not make its name durable, and syncing a directory
//     does not make the data of the files in it durable, nor its own entry in
//     its parent.
//   - Inodes. Entries point at files, not copies: after Rename, the durable
//     entries of the old directory still point at the same file, whose
//     durable data is whatever it last synced.
//   - Steps. Each call to OpenFile, MkdirAll, Rename, Remove, SyncDir,
//     File.Write, File.Sync and File.Close is one step, whether it succeeds
//     or fails. Reads (ReadFile, ReadDir) are not steps. [Crash.Steps]
//     counts the steps taken so far.
//   - Power cut. After [Crash.CutAfter](n), the first n steps of the Crash
//     (counted from its creation) complete and the power goes off as soon
//     as step n completes (at once if it already has): every later call,
//     reads included, fails with an error wrapping [ErrPowerCut] and
//     changes nothing. So a test loops cut from 0 (nothing happens) to
//     Steps (everything happens, the cut comes after).
//   - Reboot. [Crash.Reboot] cuts the power (if it is still on) and returns a
//     new Crash holding what the disk holds at power-on: every directory
//     has its durable entries, every file reachable from them its durable
//     data, and nothing that is not reachable from the root through durable
//     entries survives. The new Crash has its steps counted from zero and
//     everything in it is durable.
//   - Worse crashes. [Crash.RebootWith] lets a test choose, for every file
//     and directory with unsynced changes, which of its versions survives
//     (any of them, from the durable one to the current one), and for files
//     any content at all, such as a torn mix of two versions. This models a
//     file system that wrote back part of its cache before the cut: a
//     journal that committed a truncation or a rename, a data block that
//     reached the disk. Reboot is RebootWith with every choice the durable
//     version, which is kind to unsynced changes: under Reboot alone a
//     truncate-write-fsync in place looks atomic, while RebootWith choosing
//     the truncated version shows the empty file a real cut can leave. Test
//     with both.
//
// What the model does not cover: corruption of synced data, reordering of
// synced writes (a completed fsync is taken as a barrier), metadata such as
// permissions and times surviving or not (they follow the entry), and
// partial failures that are not power cuts (EIO, ENOSPC) other than through
// a wrapping FS.
package durable
