import { crc32 } from '../src/engine/zip/crc32.ts';
import type { ZipKnownPiece } from '../src/engine/zip/zip-writer.ts';
import type { BlockHash } from '../src/protocol/index.ts';
import type { BlockCrc } from './block-crcs.ts';
import type { IdbBlockStore } from './idb-store.ts';
import { sha256 } from './web-crypto.ts';
import type { ZipBlockStore, ZipOutput } from './zip-export.ts';

/**
 * This device's blocks as a zip reads them: each one a piece with its CRC-32. A block file with
 * a CRC on record (the block writer keeps one for every block it stores) goes out unread: its
 * disk-backed File for a file stream (the browser copies it file to file), its bytes for a
 * download. A block without one (stored before CRCs were kept, uploaded from this device, a
 * cached block) is read once here: its SHA-256 checked against its name, so a record always
 * belongs to the content the hash names, then its CRC computed and kept for the next zip.
 * Small blocks (IndexedDB packs) are read and checksummed each time: their bytes are needed
 * anyway, and 100,000 records for 100,000 small files would cost more than they save.
 */
export class ZipBlocks implements ZipBlockStore {
  constructor(private readonly store: IdbBlockStore) {}

  hasBlocks(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    return this.store.hasBlocks(hashes);
  }

  blockCrcs(hashes: readonly BlockHash[]): Promise<Map<BlockHash, BlockCrc>> {
    return this.store.blockCrcs(hashes);
  }

  smallBlocks(hashes: readonly BlockHash[]): Promise<Map<BlockHash, Uint8Array>> {
    return this.store.inlineBlocks(hashes);
  }

  async piece(hash: BlockHash, output: ZipOutput, known: BlockCrc | undefined): Promise<ZipKnownPiece | null> {
    if (known) {
      const data = output === 'blobs' ? await this.store.getBlob(hash) : await this.store.readBlock(hash);
      if (!data) return null;
      // A record for another length is not this block's: computed again below.
      if ((data instanceof Uint8Array ? data.length : data.size) === known.size) return { data, crc32: known.crc32 };
    }
    const bytes = await this.store.readBlock(hash);
    if (!bytes) return null;
    const record: BlockCrc = { crc32: crc32(bytes), size: bytes.length };
    if (this.store.keepsCrcOf(bytes.length)) {
      if ((await sha256(bytes)) !== hash) throw new Error(`block ${hash.slice(0, 12)}… on this device is damaged (its bytes do not match its hash)`);
      this.store.rememberCrc(hash, record);
      if (output === 'blobs') {
        const blob = await this.store.getBlob(hash);
        if (blob?.size === bytes.length) return { data: blob, crc32: record.crc32 };
      }
    }
    return { data: bytes, crc32: record.crc32 };
  }
}
