/* The constants of the vector variants' exp (kernels_avx2.c,
 * kernels_avx512.c), Cephes' expf: x = k ln2 + r with k = round(x log2 e)
 * and ln2 split in a short high part (k * LN2_HI exact) and the rest, so
 * |r| <= ln2 / 2; exp(r) = 1 + r + r^2 P(r), P's coefficients from the
 * highest power down (about 1 ulp on that range); exp(x) = 2^k exp(r). */
#ifndef T2_KERNELS_EXP_H
#define T2_KERNELS_EXP_H

#define T2_EXP_LOG2E 1.44269504088896341f
#define T2_EXP_LN2_HI 0.693359375f
#define T2_EXP_LN2_LO -2.12194440e-4f

enum { T2_EXP_DEGREE = 6 };
static const float t2_exp_poly[T2_EXP_DEGREE] = {1.9875691500e-4f, 1.3981999507e-3f,
                                                 8.3334519073e-3f, 4.1665795894e-2f,
                                                 1.6666665459e-1f, 5.0000001201e-1f};

#endif
