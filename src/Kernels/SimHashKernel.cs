using System.Runtime.Intrinsics;

namespace KvDb.Kernels;

/// <summary>
/// SimHash signatures: the sign of a vector's projection on K·L random hyperplanes, packed as L codes of
/// K bits. The hyperplanes are stored transposed ([dim, planes]) so each input dimension is one
/// broadcast FMA across 16 planes, and one pass over the vector computes every table's bits.
/// </summary>
public static unsafe class SimHashKernel
{
    /// <summary>
    /// Hashes <paramref name="count"/> rows of <paramref name="rows"/> ([count, dim]) with hyperplanes
    /// <paramref name="planesTransposed"/> ([dim, planes], planes ≥ tables × bitsPerTable) into
    /// <paramref name="codes"/> [count, tables]: bit b of code t is set when the projection on plane
    /// t·bitsPerTable + b is ≥ 0.
    /// </summary>
    public static void Hash(ReadOnlySpan<float> rows, int count, int dim, ReadOnlySpan<float> planesTransposed, int bitsPerTable, int tables, Span<ushort> codes)
    {
        if (bitsPerTable is < 1 or > 16 || tables < 1 || dim < 1)
        {
            throw new ArgumentException("bitsPerTable must be in 1..16 and tables, dim ≥ 1");
        }

        int planes = planesTransposed.Length / dim;
        if (planes < bitsPerTable * tables || rows.Length < (long)count * dim || codes.Length < (long)count * tables)
        {
            throw new ArgumentException("planes, rows or codes are too short for count × tables × bitsPerTable");
        }

        // Eight rows per pass share every hyperplane load, so the plane matrix streams from cache once
        // per eight rows instead of once per row.
        const int Block = 8;
        float[] projection = System.Buffers.ArrayPool<float>.Shared.Rent(Block * planes);
        try
        {
            fixed (float* p = planesTransposed)
            fixed (float* x = rows)
            fixed (float* acc = projection)
            fixed (ushort* c = codes)
            {
                for (int i0 = 0; i0 < count; i0 += Block)
                {
                    int m = Math.Min(Block, count - i0);
                    Project(x + (long)i0 * dim, m, dim, p, planes, acc);
                    for (int r = 0; r < m; r++)
                    {
                        float* a = acc + (long)r * planes;
                        ushort* ci = c + (long)(i0 + r) * tables;
                        int plane = 0;
                        for (int t = 0; t < tables; t++)
                        {
                            int code = 0;
                            for (int b = 0; b < bitsPerTable; b++, plane++)
                            {
                                code |= (a[plane] >= 0f ? 1 : 0) << b;
                            }

                            ci[t] = (ushort)code;
                        }
                    }
                }
            }
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(projection);
        }
    }

    private static void Project(float* x, int m, int dim, float* planes, int count, float* acc)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated && m == 8)
        {
            float* x0 = x;
            float* x1 = x + dim;
            float* x2 = x + 2 * dim;
            float* x3 = x + 3 * dim;
            float* x4 = x + 4 * dim;
            float* x5 = x + 5 * dim;
            float* x6 = x + 6 * dim;
            float* x7 = x + 7 * dim;
            for (; j <= count - 16; j += 16)
            {
                Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
                float* column = planes + j;
                for (int d = 0; d < dim; d++)
                {
                    Vector512<float> pv = Vector512.Load(column + (long)d * count);
                    a0 = Vector512.FusedMultiplyAdd(Vector512.Create(x0[d]), pv, a0);
                    a1 = Vector512.FusedMultiplyAdd(Vector512.Create(x1[d]), pv, a1);
                    a2 = Vector512.FusedMultiplyAdd(Vector512.Create(x2[d]), pv, a2);
                    a3 = Vector512.FusedMultiplyAdd(Vector512.Create(x3[d]), pv, a3);
                    a4 = Vector512.FusedMultiplyAdd(Vector512.Create(x4[d]), pv, a4);
                    a5 = Vector512.FusedMultiplyAdd(Vector512.Create(x5[d]), pv, a5);
                    a6 = Vector512.FusedMultiplyAdd(Vector512.Create(x6[d]), pv, a6);
                    a7 = Vector512.FusedMultiplyAdd(Vector512.Create(x7[d]), pv, a7);
                }

                a0.Store(acc + j);
                a1.Store(acc + count + j);
                a2.Store(acc + 2L * count + j);
                a3.Store(acc + 3L * count + j);
                a4.Store(acc + 4L * count + j);
                a5.Store(acc + 5L * count + j);
                a6.Store(acc + 6L * count + j);
                a7.Store(acc + 7L * count + j);
            }
        }

        // Remaining planes (or every plane for a short final block) take the scalar path.
        for (int r = 0; r < m; r++)
        {
            float* xr = x + (long)r * dim;
            for (int jj = j; jj < count; jj++)
            {
                float sum = 0;
                for (int d = 0; d < dim; d++)
                {
                    sum += xr[d] * planes[(long)d * count + jj];
                }

                acc[(long)r * count + jj] = sum;
            }
        }
    }
}
