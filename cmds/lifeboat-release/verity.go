package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
)

var verityCommand = cli.Command{
	Name:     "verity",
	Usage:    "[--salt=HEX|-] [--hash=sha256] [--data-block-size=4096] [--hash-block-size=4096] [--format=1|0] [--no-superblock] [--hash-offset=N] [--data-blocks=N] [--uuid=UUID] DATA HASHFILE",
	Synopsis: "build an image's dm-verity hash tree, as veritysetup format does",
	Run:      runVerity,
}

// verityResult is what verity reports.
type verityResult struct {
	HashFile      string         `json:"hash_file"`
	UUID          string         `json:"uuid,omitempty"`
	HashType      uint32         `json:"hash_type"`
	DataBlocks    int64          `json:"data_blocks"`
	DataBlockSize uint32         `json:"data_block_size"`
	HashBlocks    int64          `json:"hash_blocks"`
	HashBlockSize uint32         `json:"hash_block_size"`
	HashAlgorithm string         `json:"hash_algorithm"`
	Salt          string         `json:"salt"` // hex; "-" for none, as veritysetup prints it
	RootHash      string         `json:"root_hash"`
	HashOffset    int64          `json:"hash_offset"`
	HashStart     int64          `json:"hash_start"` // byte offset of the first hash block
	HashSize      int64          `json:"hash_size"`  // bytes from hash_offset, superblock included
	Levels        []verity.Level `json:"levels"`
	Duration      time.Duration  `json:"duration_ns"`
}

func runVerity(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	def := verity.DefaultParams()
	saltFlag := fs.String("salt", "", "salt in hex, or - for none (default: 32 random bytes)")
	alg := fs.String("hash", def.HashAlg, "hash algorithm: sha256, sha512, sha1, sha224 or sha384")
	dbs := fs.Uint("data-block-size", uint(def.DataBlockSize), "data block size in bytes")
	hbs := fs.Uint("hash-block-size", uint(def.HashBlockSize), "hash block size in bytes")
	format := fs.Uint("format", uint(def.Version), "hash format: 1, or 0 for Chrome OS")
	noSB := fs.Bool("no-superblock", false, "write no superblock before the tree")
	hashOffset := fs.Int64("hash-offset", 0, "where the hash area starts in HASHFILE, a multiple of 512")
	dataBlocks := fs.Int64("data-blocks", 0, "data blocks to hash (default: all of DATA, or what precedes --hash-offset when HASHFILE is DATA)")
	uuidFlag := fs.String("uuid", "", "superblock UUID (default: random)")
	out := cli.OutputFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return cli.Usagef("want DATA and HASHFILE, got %d arguments", fs.NArg())
	}
	dataPath, hashPath := fs.Arg(0), fs.Arg(1)
	p := verity.Params{HashAlg: *alg, DataBlockSize: uint32(*dbs), HashBlockSize: uint32(*hbs), Version: uint32(*format)}
	if uint(p.DataBlockSize) != *dbs || uint(p.HashBlockSize) != *hbs || uint(p.Version) != *format {
		return cli.Usagef("block size or format out of range")
	}
	switch *saltFlag {
	case "-":
	case "":
		var err error
		if p.Salt, err = verity.NewSalt(); err != nil {
			return err
		}
	default:
		var err error
		if p.Salt, err = hex.DecodeString(*saltFlag); err != nil {
			return cli.Usagef("--salt: %v", err)
		}
	}
	if err := p.Validate(); err != nil {
		return cli.Usagef("%v", err)
	}
	var opts []verity.Option
	if *noSB {
		if *uuidFlag != "" {
			return cli.Usagef("--uuid goes in the superblock; --no-superblock has none")
		}
		opts = append(opts, verity.WithoutSuperblock())
	}
	if *uuidFlag != "" {
		u, err := verity.ParseUUID(*uuidFlag)
		if err != nil {
			return cli.Usagef("--uuid: %v", err)
		}
		opts = append(opts, verity.WithUUID(u))
	}
	if *dataBlocks < 0 {
		return cli.Usagef("--data-blocks=%d: want a positive number", *dataBlocks)
	}
	reporter, err := out.Reporter(std.Stderr)
	if err != nil {
		return err
	}
	opts = append(opts, verity.WithProgress(reporter))

	start := time.Now()
	data, hash, same, err := openVerityFiles(dataPath, hashPath)
	if err != nil {
		return err
	}
	defer data.Close()
	if !same {
		defer hash.Close()
	}
	dataSize, err := verityDataSize(data, dataPath, same, int64(p.DataBlockSize), *dataBlocks, *hashOffset)
	if err != nil {
		return err
	}
	tree, err := verity.Build(ctx, data, dataSize, hash, *hashOffset, p, opts...)
	if err != nil {
		return fmt.Errorf("build tree of %s into %s: %w", dataPath, hashPath, err)
	}
	if err := hash.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", hashPath, err)
	}
	if !same {
		if err := hash.Close(); err != nil {
			return fmt.Errorf("close %s: %w", hashPath, err)
		}
	}

	r := verityResult{
		HashFile: hashPath, HashType: tree.Params.Version,
		DataBlocks: tree.DataBlocks, DataBlockSize: tree.Params.DataBlockSize,
		HashBlocks: tree.HashBlocks(), HashBlockSize: tree.Params.HashBlockSize,
		HashAlgorithm: tree.Params.HashAlg, Salt: "-", RootHash: hex.EncodeToString(tree.RootHash),
		HashOffset: tree.HashOffset, HashStart: tree.HashStart, HashSize: tree.HashSize,
		Levels: tree.Levels, Duration: time.Since(start),
	}
	if len(tree.Params.Salt) > 0 {
		r.Salt = hex.EncodeToString(tree.Params.Salt)
	}
	if tree.Superblock != nil {
		r.UUID = tree.Superblock.UUID.String()
	}
	return out.Result(std.Stdout, r, func(w io.Writer) { r.print(w) })
}

// print writes r as `veritysetup format` does, tabs and all.
func (r verityResult) print(w io.Writer) {
	fmt.Fprintf(w, "VERITY header information for %s\n", r.HashFile)
	fmt.Fprintf(w, "UUID:            \t%s\n", r.UUID)
	fmt.Fprintf(w, "Hash type:       \t%d\n", r.HashType)
	fmt.Fprintf(w, "Data blocks:     \t%d\n", r.DataBlocks)
	fmt.Fprintf(w, "Data block size: \t%d\n", r.DataBlockSize)
	fmt.Fprintf(w, "Hash blocks:     \t%d\n", r.HashBlocks)
	fmt.Fprintf(w, "Hash block size: \t%d\n", r.HashBlockSize)
	fmt.Fprintf(w, "Hash algorithm:  \t%s\n", r.HashAlgorithm)
	fmt.Fprintf(w, "Salt:            \t%s\n", r.Salt)
	fmt.Fprintf(w, "Root hash:      \t%s\n", r.RootHash)
	if r.HashOffset == 0 {
		// veritysetup prints the size only for a hash area at the start.
		fmt.Fprintf(w, "Hash device size: \t%d [bytes]\n", r.HashSize)
	}
}

// openVerityFiles opens DATA for reading and HASHFILE for writing, created
// or truncated; when both name the same file, it is opened once, for
// reading and writing, and not truncated.
func openVerityFiles(dataPath, hashPath string) (data, hash *os.File, same bool, err error) {
	dst, err := os.Stat(dataPath)
	if err != nil {
		return nil, nil, false, err
	}
	if hst, err := os.Stat(hashPath); err == nil && os.SameFile(dst, hst) {
		f, err := os.OpenFile(dataPath, os.O_RDWR, 0)
		if err != nil {
			return nil, nil, false, err
		}
		return f, f, true, nil
	}
	if data, err = os.Open(dataPath); err != nil {
		return nil, nil, false, err
	}
	if hash, err = os.OpenFile(hashPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		data.Close()
		return nil, nil, false, err
	}
	return data, hash, false, nil
}

// verityDataSize is how many bytes of DATA to hash: --data-blocks, else
// everything before the hash area when it is in DATA, else all of DATA,
// which must then be whole blocks.
func verityDataSize(f *os.File, path string, same bool, blockSize, blocks, hashOffset int64) (int64, error) {
	if blocks > 0 {
		if blocks > (1<<63-1)/blockSize {
			return 0, cli.Usagef("--data-blocks=%d: too many", blocks)
		}
		return blocks * blockSize, nil
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("%s: size: %w", path, err)
	}
	what := fmt.Sprintf("%s is %d bytes", path, size)
	if same {
		size = hashOffset
		what = fmt.Sprintf("--hash-offset=%d inside DATA leaves %d bytes of data", hashOffset, size)
	}
	if size <= 0 || size%blockSize != 0 {
		return 0, cli.Usagef("%s, not a whole number of %d-byte blocks; give --data-blocks", what, blockSize)
	}
	return size, nil
}
