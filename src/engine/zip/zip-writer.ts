import { crc32Update } from './crc32.ts';
import { crc32Combine } from './crc32-combine.ts';
import { ByteChunks } from './bytes.ts';

/**
 * A streaming zip writer (PKWARE APPNOTE 6.3): entries are stored, not compressed (what a
 * workspace holds is mostly compressed already, and CPU is the limit), each one's CRC-32 is
 * computed while its bytes pass through or combined from its pieces' known CRCs
 * (crc32Combine), and the archive comes out as a sequence of chunks,
 * never as one buffer. What it keeps until the end is the central directory: about 100 bytes
 * per entry, so 100,000 files cost some 10 MB whatever their size.
 *
 * Zip64 records are written where a field would overflow: entries of 4 GiB or more, entries
 * that start 4 GiB or more into the archive, more than 65,534 entries, a central directory
 * past 4 GiB. Names are UTF-8 (flag bit 11). Every file entry is followed by a data
 * descriptor (flag bit 3) carrying its CRC, so nothing is written twice and nothing needs
 * seeking. Modification times go in as DOS time (local time, as unzip reads it) and as an
 * extended-timestamp field (UTC seconds) that Info-ZIP, 7-Zip and libarchive prefer.
 *
 * The central directory is kept as its bytes, each entry's record made as soon as the entry is
 * written and appended to 64 KiB buffers: about 100 bytes per entry, where an object and an
 * encoded name per entry cost three times that and 100,000 objects for the collector to trace.
 */

/**
 * A piece of content whose CRC-32 is known already (a stored block's): the writer combines it
 * into the entry's CRC and puts out `data` unread, so a consumer that takes Blobs (a file
 * stream) can let the browser copy a disk-backed File without its bytes crossing this thread.
 * The producer answers for `crc32` matching `data`.
 */
export interface ZipKnownPiece {
  data: Uint8Array | Blob;
  crc32: number;
}

export interface ZipFile {
  /** "/"-separated path inside the archive, no leading "/". */
  name: string;
  /** Exactly the number of bytes `data` yields; decided up front so zip64 headers can be chosen. */
  size: number;
  /** Milliseconds since the epoch. */
  mtime: number;
  data(): AsyncIterable<Uint8Array | ZipKnownPiece>;
}

export interface ZipFolder {
  /** Folder path; written with a trailing "/". */
  name: string;
  mtime: number;
  folder: true;
}

export type ZipEntry = ZipFile | ZipFolder;

/** Progress after each entry: what has gone out so far. */
export interface ZipProgress {
  entries: number;
  /** Bytes of file content (not archive bytes) written so far. */
  contentBytes: number;
}

const LOCAL_HEADER = 0x04034b50;
const DATA_DESCRIPTOR = 0x08074b50;
const CENTRAL_HEADER = 0x02014b50;
const ZIP64_END = 0x06064b50;
const ZIP64_LOCATOR = 0x07064b50;
const END = 0x06054b50;

const FLAG_DATA_DESCRIPTOR = 0x0008;
const FLAG_UTF8 = 0x0800;
const METHOD_STORED = 0;
/** 4.5 (zip64) or 2.0 (folders, descriptors), made on Unix (so the mode bits below count). */
const VERSION_ZIP64 = 45;
const VERSION_BASIC = 20;
const MADE_BY = (3 << 8) | VERSION_ZIP64;
const FILE_ATTRIBUTES = (0o100644 << 16) >>> 0;
const FOLDER_ATTRIBUTES = ((0o040755 << 16) | 0x10) >>> 0;

const MAX_32 = 0xffffffff;
const MAX_16 = 0xffff;
const TAG_ZIP64 = 0x0001;
const TAG_TIMESTAMP = 0x5455;

/** An entry being written: what its headers and its central directory record say. */
interface Written {
  name: Uint8Array;
  folder: boolean;
  crc: number;
  size: number;
  offset: number;
  dosTime: number;
  dosDate: number;
  unixSeconds: number;
}

const encoder = new TextEncoder();

/**
 * The archive of `entries`, as chunks in order. File content chunks are passed through as
 * they come (not copied; a ZipKnownPiece as its data); headers are small chunks of their own.
 * Throws when a file yields a different number of bytes than its `size` says, or a name is
 * empty or too long for zip.
 */
export async function* zipArchive(
  entries: AsyncIterable<ZipEntry> | Iterable<ZipEntry>,
  onEntry?: (progress: ZipProgress) => void,
): AsyncGenerator<Uint8Array | Blob> {
  const directory = new ByteChunks(DIRECTORY_CHUNK_BYTES);
  let entryCount = 0;
  let offset = 0;
  let contentBytes = 0;
  for await (const entry of entries) {
    const folder = 'folder' in entry;
    const name = encodeName(folder ? `${entry.name.replace(/\/+$/, '')}/` : entry.name);
    const size = folder ? 0 : entry.size;
    if (!Number.isSafeInteger(size) || size < 0) throw new Error(`${entry.name}: size ${size} is not a byte count`);
    const { dosTime, dosDate } = dosDateTime(entry.mtime);
    const record: Written = { name, folder, crc: 0, size, offset, dosTime, dosDate, unixSeconds: unixSeconds(entry.mtime) };
    const header = localHeader(record);
    yield header;
    offset += header.length;
    if (!folder) {
      let crc = 0;
      let count = 0;
      for await (const chunk of entry.data()) {
        let out: Uint8Array | Blob;
        let length: number;
        if (chunk instanceof Uint8Array) {
          out = chunk;
          length = chunk.length;
          crc = crc32Update(crc, chunk);
        } else {
          out = chunk.data;
          length = out instanceof Uint8Array ? out.length : out.size;
          crc = crc32Combine(crc, chunk.crc32, length);
        }
        count += length;
        if (count > size) throw new Error(`${entry.name}: has more than the ${size} bytes expected`);
        if (length > 0) yield out;
      }
      if (count !== size) throw new Error(`${entry.name}: has ${count} bytes, ${size} expected`);
      record.crc = crc;
      const descriptor = dataDescriptor(record);
      yield descriptor;
      offset += size + descriptor.length;
      contentBytes += size;
    }
    directory.append(centralHeader(record));
    entryCount += 1;
    onEntry?.({ entries: entryCount, contentBytes });
  }
  const directoryStart = offset;
  const directoryBytes = directory.length;
  yield* directory.take();
  yield endRecords(entryCount, directoryStart, directoryBytes);
}

/** The central directory's records are gathered in buffers of this size (and go out as them). */
const DIRECTORY_CHUNK_BYTES = 64 * 1024;

function encodeName(name: string): Uint8Array {
  const bytes = encoder.encode(name);
  if (bytes.length === 0 || bytes.length > MAX_16) throw new Error(`"${name.slice(0, 100)}" cannot be a zip entry name (empty or over 65,535 bytes)`);
  return bytes;
}

/** Sizes need zip64 fields from 0xFFFFFFFF up (that value itself means "see zip64"). */
function sizeNeeds64(record: Written): boolean {
  return record.size >= MAX_32;
}

function offsetNeeds64(record: Written): boolean {
  return record.offset >= MAX_32;
}

function localHeader(record: Written): Uint8Array {
  const zip64 = sizeNeeds64(record);
  const extraLength = (zip64 ? 20 : 0) + 9;
  const out = new Writer(30 + record.name.length + extraLength);
  out.u32(LOCAL_HEADER);
  out.u16(zip64 ? VERSION_ZIP64 : VERSION_BASIC);
  out.u16(FLAG_UTF8 | (record.folder ? 0 : FLAG_DATA_DESCRIPTOR));
  out.u16(METHOD_STORED);
  out.u16(record.dosTime);
  out.u16(record.dosDate);
  // CRC and sizes follow the data (flag bit 3); zip64 says so with 0xFFFFFFFF and its field.
  out.u32(0);
  out.u32(zip64 ? MAX_32 : 0);
  out.u32(zip64 ? MAX_32 : 0);
  out.u16(record.name.length);
  out.u16(extraLength);
  out.bytes(record.name);
  if (zip64) {
    out.u16(TAG_ZIP64);
    out.u16(16);
    out.u64(0);
    out.u64(0);
  }
  timestampField(out, record);
  return out.done();
}

function dataDescriptor(record: Written): Uint8Array {
  const zip64 = sizeNeeds64(record);
  const out = new Writer(zip64 ? 24 : 16);
  out.u32(DATA_DESCRIPTOR);
  out.u32(record.crc);
  if (zip64) {
    out.u64(record.size);
    out.u64(record.size);
  } else {
    out.u32(record.size);
    out.u32(record.size);
  }
  return out.done();
}

function centralHeader(record: Written): Uint8Array {
  const bigSize = sizeNeeds64(record);
  const bigOffset = offsetNeeds64(record);
  const zip64Length = (bigSize ? 16 : 0) + (bigOffset ? 8 : 0);
  const extraLength = (zip64Length > 0 ? 4 + zip64Length : 0) + 9;
  const out = new Writer(46 + record.name.length + extraLength);
  out.u32(CENTRAL_HEADER);
  out.u16(MADE_BY);
  out.u16(bigSize || bigOffset ? VERSION_ZIP64 : VERSION_BASIC);
  out.u16(FLAG_UTF8 | (record.folder ? 0 : FLAG_DATA_DESCRIPTOR));
  out.u16(METHOD_STORED);
  out.u16(record.dosTime);
  out.u16(record.dosDate);
  out.u32(record.crc);
  out.u32(bigSize ? MAX_32 : record.size);
  out.u32(bigSize ? MAX_32 : record.size);
  out.u16(record.name.length);
  out.u16(extraLength);
  out.u16(0); // comment
  out.u16(0); // disk number
  out.u16(0); // internal attributes
  out.u32(record.folder ? FOLDER_ATTRIBUTES : FILE_ATTRIBUTES);
  out.u32(bigOffset ? MAX_32 : record.offset);
  out.bytes(record.name);
  if (zip64Length > 0) {
    // Only the fields whose header value is 0xFFFFFFFF, in this order (APPNOTE 4.5.3).
    out.u16(TAG_ZIP64);
    out.u16(zip64Length);
    if (bigSize) {
      out.u64(record.size);
      out.u64(record.size);
    }
    if (bigOffset) out.u64(record.offset);
  }
  timestampField(out, record);
  return out.done();
}

/** Extended timestamp (0x5455): modification time only, UTC seconds. */
function timestampField(out: Writer, record: Written): void {
  out.u16(TAG_TIMESTAMP);
  out.u16(5);
  out.u8(1);
  out.i32(record.unixSeconds);
}

function endRecords(count: number, directoryStart: number, directorySize: number): Uint8Array {
  const zip64 = count >= MAX_16 || directoryStart >= MAX_32 || directorySize >= MAX_32;
  const out = new Writer((zip64 ? 56 + 20 : 0) + 22);
  if (zip64) {
    const zip64EndAt = directoryStart + directorySize;
    out.u32(ZIP64_END);
    out.u64(44); // size of the rest of this record
    out.u16(MADE_BY);
    out.u16(VERSION_ZIP64);
    out.u32(0); // this disk
    out.u32(0); // disk where the directory starts
    out.u64(count);
    out.u64(count);
    out.u64(directorySize);
    out.u64(directoryStart);
    out.u32(ZIP64_LOCATOR);
    out.u32(0);
    out.u64(zip64EndAt);
    out.u32(1); // disks in all
  }
  out.u32(END);
  out.u16(0);
  out.u16(0);
  out.u16(Math.min(count, MAX_16));
  out.u16(Math.min(count, MAX_16));
  out.u32(Math.min(directorySize, MAX_32));
  out.u32(Math.min(directoryStart, MAX_32));
  out.u16(0); // comment length
  return out.done();
}

/** DOS date and time fields in local time (how unzip tools read them), clamped to 1980–2107. */
function dosDateTime(mtime: number): { dosTime: number; dosDate: number } {
  const date = new Date(Number.isFinite(mtime) ? mtime : 0);
  const year = date.getFullYear();
  if (!(year >= 1980)) return { dosTime: 0, dosDate: (1 << 5) | 1 };
  if (year > 2107) return { dosTime: (23 << 11) | (59 << 5) | 29, dosDate: (127 << 9) | (12 << 5) | 31 };
  return {
    dosTime: (date.getHours() << 11) | (date.getMinutes() << 5) | (date.getSeconds() >> 1),
    dosDate: ((year - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate(),
  };
}

function unixSeconds(mtime: number): number {
  const seconds = Math.floor((Number.isFinite(mtime) ? mtime : 0) / 1000);
  return Math.max(-0x80000000, Math.min(0x7fffffff, seconds));
}

/** Little-endian fields into a buffer of known length. */
class Writer {
  private readonly buffer: Uint8Array;
  private readonly view: DataView;
  private at = 0;

  constructor(length: number) {
    this.buffer = new Uint8Array(length);
    this.view = new DataView(this.buffer.buffer);
  }

  u8(value: number): void {
    this.view.setUint8(this.at, value);
    this.at += 1;
  }

  u16(value: number): void {
    this.view.setUint16(this.at, value, true);
    this.at += 2;
  }

  u32(value: number): void {
    this.view.setUint32(this.at, value >>> 0, true);
    this.at += 4;
  }

  i32(value: number): void {
    this.view.setInt32(this.at, value, true);
    this.at += 4;
  }

  u64(value: number): void {
    this.view.setBigUint64(this.at, BigInt(value), true);
    this.at += 8;
  }

  bytes(value: Uint8Array): void {
    this.buffer.set(value, this.at);
    this.at += value.length;
  }

  done(): Uint8Array {
    if (this.at !== this.buffer.length) throw new Error(`zip record: wrote ${this.at} of ${this.buffer.length} bytes`);
    return this.buffer;
  }
}
