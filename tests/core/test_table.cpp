#include <gtest/gtest.h>

#include "sigmaquant/error.h"
#include "sigmaquant/progress.h"
#include "sigmaquant/table.h"

TEST(Table, AlignsColumns) {
  sq::Table t({"name", "n"}, {sq::Align::Left, sq::Align::Right});
  t.add({"conv1", "5"});
  t.add({"fc", "1,234"});
  EXPECT_EQ(t.str(), "name       n\n-----  -----\nconv1      5\nfc     1,234\n");
  EXPECT_THROW(t.add({"x"}), sq::Error);
}

TEST(Table, ThousandsAndDurations) {
  EXPECT_EQ(sq::thousands(0), "0");
  EXPECT_EQ(sq::thousands(1234567), "1,234,567");
  EXPECT_EQ(sq::thousands(-1000), "-1,000");
  EXPECT_EQ(sq::format_duration(12.34), "12.3s");
  EXPECT_EQ(sq::format_duration(187), "3m07s");
  EXPECT_EQ(sq::format_duration(3720), "1h02m");
}
