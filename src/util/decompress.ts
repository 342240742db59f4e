import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { decompress as zstd } from 'fzstd';
import xz from 'xz-decompress';

/**
 * The compressions Debian uses for package indexes and .deb members, decoded without host tools and
 * without native code (xz: xz-embedded as WebAssembly; zstd: fzstd, plain JavaScript; gzip: zlib).
 */

export type Compression = 'xz' | 'zst' | 'gz' | 'none';

/** The compression a file name's extension says ("data.tar.xz" -> xz). */
export function compressionOf(name: string): Compression {
  if (name.endsWith('.xz')) return 'xz';
  if (name.endsWith('.zst')) return 'zst';
  if (name.endsWith('.gz')) return 'gz';
  return 'none';
}

export async function decompress(data: Buffer, kind: Compression): Promise<Buffer> {
  switch (kind) {
    case 'none':
      return data;
    case 'gz':
      return gunzipSync(data);
    case 'zst':
      return Buffer.from(zstd(data));
    case 'xz': {
      const stream = new xz.XzReadableStream(
        Readable.toWeb(Readable.from([data])) as ReadableStream<Uint8Array>,
      );
      const chunks: Buffer[] = [];
      for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>)
        chunks.push(Buffer.from(chunk));
      return Buffer.concat(chunks);
    }
  }
}
