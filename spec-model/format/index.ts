/** Facts of the format shared by the model and the driver: layouts, constants, GUIDs, CRC, errors. */
export * from './constants';
export * from './crc';
export * from './errors';
export * from './fields';
export * from './geometry';
export * from './guid';
export * from './structures';
export * from './text';
