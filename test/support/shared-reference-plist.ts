/**
 * A binary plist that is small on the wire and large once expanded: `{HostID, Filler: [d, d, …]}`
 * where every slot of the Filler array references ONE data object `d`. Valid by Apple's format
 * (sharing objects is how CFBinaryPList deduplicates), so a parser accepts it; re-encoding it as
 * XML writes `d` once per reference. Used by the pair-record store tests and bench/store-attacks.ts.
 */
export function sharedReferencePlist(dataBytes: number, refs: number): Buffer {
  const intObject = (n: number): Buffer => {
    const b = Buffer.alloc(5);
    b[0] = 0x12; // int, 2^2 bytes
    b.writeUInt32BE(n, 1);
    return b;
  };
  const marker = (type: number, count: number): Buffer =>
    count < 15 ? Buffer.from([(type << 4) | count]) : Buffer.concat([Buffer.from([(type << 4) | 0xf]), intObject(count)]);
  const ascii = (s: string): Buffer => Buffer.concat([marker(0x5, s.length), Buffer.from(s, 'latin1')]);
  const ref = (i: number): Buffer => {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(i);
    return b;
  };
  const objects = [
    Buffer.concat([marker(0xd, 2), ref(1), ref(2), ref(3), ref(4)]), // 0: {1: 3, 2: 4}
    ascii('HostID'), // 1
    ascii('Filler'), // 2
    ascii('SHARED-REFERENCES'), // 3
    Buffer.concat([marker(0xa, refs), ...Array.from({ length: refs }, () => ref(5))]), // 4: [5, 5, …]
    Buffer.concat([marker(0x4, dataBytes), Buffer.alloc(dataBytes, 0x41)]), // 5: data
  ];
  const header = Buffer.from('bplist00', 'latin1');
  const offsets: number[] = [];
  let at = header.length;
  for (const o of objects) {
    offsets.push(at);
    at += o.length;
  }
  const table = Buffer.alloc(objects.length * 4);
  offsets.forEach((o, i) => table.writeUInt32BE(o, i * 4));
  const trailer = Buffer.alloc(32);
  trailer[6] = 4; // offset size
  trailer[7] = 2; // reference size
  trailer.writeBigUInt64BE(BigInt(objects.length), 8);
  trailer.writeBigUInt64BE(0n, 16); // top object
  trailer.writeBigUInt64BE(BigInt(at), 24); // offset table
  return Buffer.concat([header, ...objects, table, trailer]);
}
