/** The driver's version, written into the Creator field of images it creates ("vhdx-conform <version>"). Keep equal to package.json. */
export const IMPL_VERSION = '0.1.0';
